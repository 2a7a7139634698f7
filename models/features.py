"""The feature vector a policy scores a customer on, taken at decision time.

The same snapshot is stored with the decision and used again when its outcome arrives,
so the model learns from what it saw, not from the profile as it is by then.
"""

from __future__ import annotations

import math

from engine.profile import Profile
from topics.events import Event


def features(p: Profile, ev: Event) -> dict[str, float]:
    """A small dense feature dict; keys are stable names the model heads learn on.

    >>> from engine.profile import Profile
    >>> from topics.events import Event
    >>> f = features(Profile("c1"), Event("web", "search", "e1", "c1", 0, {}))
    >>> f["trigger.web.search"], f["cart_items"]
    (1.0, 0.0)
    """
    web = p.web_events
    views = p.counts.get("web.product_view", 0)
    searches = p.counts.get("web.search", 0)
    return {
        "bias": 1.0,
        "log_web_events": math.log1p(web),
        "view_share": views / web if web else 0.0,
        "search_share": searches / web if web else 0.0,
        "mobile_share": p.mobile_events / web if web else 0.0,
        "cart_items": float(min(len(p.cart), 10)),
        "log_cart_value": math.log1p(sum(p.cart.values())),
        "log_orders": math.log1p(p.orders),
        "log_spend": math.log1p(p.total_spend),
        "open_tickets": float(len(p.open_tickets)),
        "conversion_rate": (p.conversions + 0.5) / (p.decisions + 1.0),
        f"trigger.{ev.source}.{ev.type}": 1.0,
    }
