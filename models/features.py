"""The feature vector a policy scores a customer on, taken at decision time.

The same snapshot is stored with the decision and used again when its outcome arrives,
so the model learns from what it saw, not from the profile as it is by then.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.decay import weights
from topics.events import Event

if TYPE_CHECKING:  # engine.profile imports this module's NAMES through engine.pending
    from engine.profile import Profile

NAMES: tuple[str, ...] = (
    "log_web_events",
    "view_share",
    "search_share",
    "mobile_share",
    "cart_items",
    "log_cart_value",
    "log_orders_30d",
    "log_spend_30d",
    "open_tickets",
    "conversion_rate",
)
"""Every feature, always present, in the order a pending decision stores the values.

Orders and spend are the decayed counters (``engine.decay``): what a customer bought
this month says more about the next offer than what they bought years ago. Left out:

- a constant ``bias`` and a one-hot of the triggering event: River's standard scaler
  turns a feature that never varies into 0 (a key present only when it is 1 never
  varies), and each head has its own intercept;
- the tier: in the simulated population, whose tiers track the hidden segment loosely,
  a tier one-hot lowered the learned lift from 0.53 to 0.50 of the oracle's (offline,
  the demo's load, seeds 11-18) and a tier rank did not raise it: a weak signal costs
  the per-arm heads more variance than it pays;
- recent visits (page and product views) in place of ``log_web_events``: 0.526 against
  0.531 (seeds 11-30), all web events being the broader activity signal.

These figures were measured with the earlier per-arm River heads at the demo's scale;
the lift benchmark (``benchmarks/lift.py``) now measures ``UpliftHeads`` on the same
features at about 0.9 of the oracle's lift after 100,000 decisions.
"""

LAYOUT = zlib.crc32(",".join(NAMES).encode()) & 0xFFFF
"""A fingerprint of NAMES, stored with each pending decision: after a deploy that changes
the features, a vector stored before it is not read with the new names."""


def features(p: Profile, ev: Event, *, web_events: int) -> dict[str, float]:
    """A small dense feature dict with the keys of NAMES, rounded to 3 decimals (what the
    model loses by that is noise; what the stored decision saves is half its size).
    ``web_events`` is ``p.web_events``, which the caller's profile view has summed.

    Recent counters are read at the event's time, so a replay scores the same vector.
    A value that is a whole number (a count, the zero of a customer with no cart or no
    orders) is left as it is: rounding would return it unchanged, and each ``round`` to
    3 decimals costs a float-to-decimal conversion and back, which were half of what
    this function cost. The features of counts are remembered for the same reason.

    >>> from engine.profile import Profile
    >>> from topics.events import Event
    >>> p = Profile("c1", counts={"web.search": 2, "web.page_view": 1}, cart={"p1": 9.0})
    >>> f = features(p, Event("web", "search", "e1", "c1", 0, {}), web_events=p.web_events)
    >>> f["search_share"], f["cart_items"], f["log_cart_value"], list(f) == list(NAMES)
    (0.667, 1.0, 2.303, True)
    """
    web = web_events
    counts = p.counts
    recent = p.recent
    cart = p.cart
    orders, spend = recent.orders, recent.spend
    if orders or spend:  # decayed to the event's time as ``decay.at`` would, same floats
        bought = weights(recent, ev.time_ms // 1000)[1]
        log_orders, log_spend = _log(orders * bought), _log(spend * bought)
    else:  # no orders: ``_log``'s zeros, without its two calls (with the cart's below,
        # 14,300 instructions where the calls made it 18,100: callgrind)
        log_orders, log_spend = float(orders), float(spend)
    # In NAMES order (the doctest checks it).
    return {
        "log_web_events": _log_count(web),
        "view_share": _share(counts.get("web.product_view", 0), web),
        "search_share": _share(counts.get("web.search", 0), web),
        "mobile_share": _share(p.mobile_events, web),
        "cart_items": float(min(len(cart), 10)) if cart else 0.0,
        "log_cart_value": _log(sum(cart.values())) if cart else 0.0,
        "log_orders_30d": log_orders,
        "log_spend_30d": log_spend,
        "open_tickets": float(len(p.open_tickets)),
        "conversion_rate": _conversion_rate(p.conversions, p.decisions),
    }


def _log(value: float) -> float:
    """``log1p(value)`` to 3 decimals; a zero as it is (``log1p`` keeps its sign).

    >>> _log(9.0), _log(0), _log(-0.0)
    (2.303, 0.0, -0.0)
    """
    return round(math.log1p(value), 3) if value else float(value)


# Counts repeat from one decision point to the next (a customer's web events, their
# shares, decisions and conversions): a cache hit costs a fifth of a ``round``.
_log_count = lru_cache(maxsize=4096)(_log)


@lru_cache(maxsize=4096)
def _share(part: int, whole: int) -> float:
    """``part / whole`` to 3 decimals, 0 when ``whole`` is; none or all of it unrounded.

    >>> _share(1, 3), _share(2, 0), _share(0, 4), _share(4, 4)
    (0.333, 0.0, 0.0, 1.0)
    """
    if not whole or not part:
        return 0.0
    return 1.0 if part == whole else round(part / whole, 3)


@lru_cache(maxsize=4096)
def _conversion_rate(conversions: int, decisions: int) -> float:
    """Conversions per decision, smoothed (a half over one) so a new customer is not 0."""
    return round((conversions + 0.5) / (decisions + 1.0), 3)
