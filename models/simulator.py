"""A synthetic customer population that knows its own true response probabilities.

Each customer has hidden traits — a segment and a preferred device — that shape both
what they do (deal seekers search and fill carts, browsers view products, loyal
customers order) and how they answer each action and channel. Because the simulator
knows the true probability of a conversion for every candidate, the expected
conversion of the oracle policy and of a random policy can be computed exactly for
the very decisions the engine made.

Customers also have attributes the shop knows and sends with each login: a country
with its time zone, and a tier. The tier loosely tracks the hidden segment (loyal
customers more often reach gold, deal seekers stay bronze), as a loyalty tier does, so
it tells the engine something, but far from everything. A known customer's first
activity is a login; after a resolved ticket some answer a CSAT survey, and now and then
a customer answers an NPS survey. Neither score changes how they respond to actions.

Everything is driven by seeded generators and explicit times: no wall clock.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

SEGMENTS = ("deal_seeker", "browser", "loyal")
CATEGORIES = ("shoes", "outdoor", "kitchen", "books", "toys", "beauty")
PLACES = (
    ("DE", "Europe/Berlin"),
    ("GB", "Europe/London"),
    ("FR", "Europe/Paris"),
    ("US", "America/New_York"),
    ("US", "America/Los_Angeles"),
    ("BR", "America/Sao_Paulo"),
    ("IN", "Asia/Kolkata"),
    ("JP", "Asia/Tokyo"),
)
"""(country, time zone) pairs customers live in."""
TIERS = ("bronze", "silver", "gold")
_PRIORITIES = ("low", "normal", "normal", "high", "urgent")
_BUYS = 0.5
"""Share of conversions that show as a purchase rather than a ``converted`` report."""
_BOUNCED = 0.02
_OPENS = 0.4
_DISMISSES = 0.3
_UNSUBSCRIBES = 0.01
"""Shares of the decisions that do not convert: bounced (instead of delivered), then of
those delivered, opened, dismissed and unsubscribed (the rest: silence)."""

_TIER_WEIGHTS: dict[str, tuple[float, ...]] = {  # in the order of TIERS
    "deal_seeker": (0.6, 0.3, 0.1),
    "browser": (0.5, 0.35, 0.15),
    "loyal": (0.2, 0.3, 0.5),
}

# What each segment does in one step of activity: (source, type) -> weight.
_BEHAVIOUR: dict[str, dict[tuple[str, str], float]] = {
    "deal_seeker": {
        ("web", "search"): 0.35,
        ("web", "product_view"): 0.2,
        ("web", "add_to_cart"): 0.25,
        ("web", "page_view"): 0.12,
        ("web", "checkout_started"): 0.05,
        ("purchase", "order_placed"): 0.03,
    },
    "browser": {
        ("web", "product_view"): 0.55,
        ("web", "page_view"): 0.3,
        ("web", "search"): 0.06,
        ("web", "add_to_cart"): 0.06,
        ("purchase", "order_placed"): 0.03,
    },
    "loyal": {
        ("web", "product_view"): 0.3,
        ("web", "add_to_cart"): 0.2,
        ("web", "page_view"): 0.2,
        ("web", "checkout_started"): 0.15,
        ("purchase", "order_placed"): 0.15,
    },
}

# How strongly each segment answers each marketing action (before the channel factor).
_ACTION_EFFECT: dict[str, dict[str, float]] = {
    "discount_offer": {"deal_seeker": 0.40, "browser": 0.04, "loyal": 0.06},
    "product_recommendation": {"deal_seeker": 0.05, "browser": 0.35, "loyal": 0.20},
    "cart_reminder": {"deal_seeker": 0.30, "browser": 0.12, "loyal": 0.25},
    "support_followup": {"deal_seeker": 0.5, "browser": 0.5, "loyal": 0.5},
}
_CHANNEL_FACTOR: dict[str, dict[str, float]] = {
    "email": {"desktop": 1.0, "mobile": 0.45},
    "push": {"desktop": 0.3, "mobile": 1.0},
    "sms": {"desktop": 0.7, "mobile": 0.7},
    "inapp": {"desktop": 0.6, "mobile": 0.6},
    "agent": {"desktop": 1.0, "mobile": 1.0},
}


@dataclass(slots=True)
class SimCustomer:
    customer_id: str
    segment: str
    device: str
    favourite: str
    country: str = "DE"
    timezone: str = "Europe/Berlin"
    tier: str = TIERS[0]
    cart: dict[str, float] = field(default_factory=dict)
    open_ticket: str | None = None
    seq: int = 0
    known: bool = True
    """False while the person browses anonymously, before their first login."""

    @property
    def anonymous_id(self) -> str:
        return "anon-" + self.customer_id


class Population:
    """``n`` customers with hidden traits, seeded.

    >>> pop = Population(100, seed=1)
    >>> ev = pop.activity(1_700_000_000_000)[-1]
    >>> ev["customer_id"], ev["type"], ev["time"], ev["tier"], ev["timezone"]
    ('sim-000041', 'login', 1700000000000, 'bronze', 'Europe/Berlin')
    >>> c = pop.by_id["sim-000041"]; c.segment, c.device
    ('browser', 'desktop')
    >>> pop.true_propensity("sim-000041", "discount_offer", "email")
    0.04
    >>> pop.true_propensity("sim-000041", "product_recommendation", "email")
    0.35
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        id_prefix: str = "sim",
        anonymous_share: float = 0.0,
        time_scale: float = 1.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.reactions = random.Random(seed + 2)
        """Draws of how customers answer decisions, apart from what they do unasked."""
        self.time_scale = time_scale
        """Multiplies every reaction delay: 1/180 runs a demo's hours in seconds, 0
        makes every reaction due at once."""
        self._schedule: list[tuple[int, int, str, str, str, str]] = []
        self._seq = 0
        self.customers = [
            SimCustomer(
                customer_id=f"{id_prefix}-{i:06d}",
                segment=self.rng.choice(SEGMENTS),
                device="mobile" if self.rng.random() < 0.5 else "desktop",
                favourite=self.rng.choice(CATEGORIES),
            )
            for i in range(n)
        ]
        self.by_id = {c.customer_id: c for c in self.customers}
        for c in self.customers:
            c.known = self.rng.random() >= anonymous_share
        # Attributes come from a generator of their own, so adding them did not change
        # who the customers are under a given seed.
        traits = random.Random(seed + 1)
        for c in self.customers:
            c.country, c.timezone = traits.choice(PLACES)
            c.tier = traits.choices(TIERS, weights=_TIER_WEIGHTS[c.segment])[0]

    def activity(self, now_ms: int) -> list[dict[str, Any]]:
        """One step of one random customer: one or two events, each with its ``source``."""
        c = self.rng.choice(self.customers)
        out: list[dict[str, Any]] = []
        if not c.known:
            # An anonymous visitor only browses, and now and then logs in for good.
            if self.rng.random() < 0.25:
                c.known = True
                return [self._login(c, now_ms, anonymous_id=c.anonymous_id)]
            web = {k: w for k, w in _BEHAVIOUR[c.segment].items() if k[0] == "web"}
            source, etype = self.rng.choices(list(web), weights=list(web.values()))[0]
            return [self._behave(c, source, etype, now_ms)]
        if c.seq == 0:
            return [self._login(c, now_ms)]
        if c.open_ticket is not None and self.rng.random() < 0.12:
            out.append(
                self._event(c, "support", "ticket_resolved", now_ms, ticket_id=c.open_ticket)
            )
            c.open_ticket = None
            if self.rng.random() < 0.5:
                score = self.rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 3, 3))[0]
                out.append(self._event(c, "support", "csat_submitted", now_ms, score=score))
        elif c.open_ticket is None and self.rng.random() < 0.01:
            c.open_ticket = f"t-{c.customer_id}-{c.seq}"
            ticket = {"ticket_id": c.open_ticket, "priority": self.rng.choice(_PRIORITIES)}
            out.append(self._event(c, "support", "ticket_opened", now_ms, **ticket))
        elif self.rng.random() < 0.005:
            score = self.rng.randrange(11)
            out.append(self._event(c, "support", "nps_submitted", now_ms, score=score))
        kinds = _BEHAVIOUR[c.segment]
        source, etype = self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
        out.append(self._behave(c, source, etype, now_ms))
        return out

    def _login(self, c: SimCustomer, now_ms: int, **ids: Any) -> dict[str, Any]:
        attributes = {"timezone": c.timezone, "country": c.country, "tier": c.tier}
        return self._event(c, "web", "login", now_ms, **ids, **attributes)

    def _behave(self, c: SimCustomer, source: str, etype: str, now_ms: int) -> dict[str, Any]:
        category = c.favourite if self.rng.random() < 0.7 else self.rng.choice(CATEGORIES)
        if etype == "add_to_cart":
            product = f"p-{category}-{self.rng.randrange(50)}"
            price = round(self.rng.uniform(5, 120), 2)
            c.cart[product] = price
            return self._event(
                c, source, etype, now_ms, product_id=product, category=category, price=price
            )
        if etype == "product_view":
            product = f"p-{category}-{self.rng.randrange(50)}"
            return self._event(c, source, etype, now_ms, product_id=product, category=category)
        if etype == "search":
            query = "sale" if c.segment == "deal_seeker" else category
            return self._event(c, source, etype, now_ms, query=query)
        if etype == "order_placed":
            amount = round(sum(c.cart.values()) or self.rng.uniform(10, 80), 2)
            c.cart.clear()
            return self._event(c, source, etype, now_ms, order_id=f"o-{c.seq}", amount=amount)
        return self._event(c, source, etype, now_ms)

    def _event(
        self, c: SimCustomer, source: str, etype: str, now_ms: int, **data: Any
    ) -> dict[str, Any]:
        c.seq += 1
        ev: dict[str, Any] = {
            "source": source,
            "event_id": f"{c.customer_id}-{c.seq}",
            "customer_id": c.customer_id,
            "type": etype,
            "time": now_ms,
            **data,
        }
        if not c.known:
            del ev["customer_id"]
            ev["anonymous_id"] = c.anonymous_id
        if source == "web":
            own = self.rng.random() < 0.85
            ev["device"] = c.device if own else ("desktop" if c.device == "mobile" else "mobile")
        return ev

    def true_propensity(self, customer_id: str, action: str, channel: str) -> float:
        """The probability that this customer converts on this action and channel now."""
        c = self.by_id[customer_id]
        effect = _ACTION_EFFECT.get(action, {}).get(c.segment, 0.0)
        if action == "cart_reminder" and not c.cart:
            effect = 0.01
        factor = _CHANNEL_FACTOR.get(channel, {}).get(c.device, 0.0)
        return min(0.95, effect * factor)

    def answer(self, decision: dict[str, Any], now_ms: int) -> bool:
        """Schedule what the channel service and the customer do about a decision that
        acts, from ``now_ms``; ``due`` hands the events over when their time comes.
        Returns whether the customer converts.

        A conversion is delivered, opened and clicked, then either reported ``converted``
        by the channel or seen as an ``order_placed`` purchase (which the engine must
        attribute). Otherwise the message now and then bounces; if delivered, it is
        sometimes dismissed, rarely unsubscribed from, and mostly met with silence.
        Delays are minutes to hours, times ``time_scale``.
        """
        c = self.by_id[decision["customer_id"]]
        did, channel = decision["decision_id"], decision["channel"]
        p = self.true_propensity(c.customer_id, decision["action"], channel)
        r = self.reactions
        converts = r.random() < p
        person = channel == "agent"
        if not converts and not person and r.random() < _BOUNCED:
            self._later(now_ms, r.uniform(1, 30), c, "bounced", did, channel)
            return False
        t = self._later(now_ms, r.uniform(1, 30), c, "delivered", did, channel)
        if converts:
            t = self._later(t, r.expovariate(1 / 1200), c, "opened", did, channel)
            t = self._later(t, r.uniform(10, 300), c, "clicked", did, channel)
            if r.random() < _BUYS and not person:
                self._later(t, r.uniform(300, 3600), c, "order_placed", did, channel)
            else:
                self._later(t, r.uniform(60, 1800), c, "converted", did, channel)
            return True
        if r.random() < _OPENS:
            t = self._later(t, r.expovariate(1 / 3600), c, "opened", did, channel)
        u = r.random()
        if u < _DISMISSES:
            self._later(t, r.expovariate(1 / 7200), c, "dismissed", did, channel)
        elif u < _DISMISSES + _UNSUBSCRIBES and not person:
            self._later(t, r.expovariate(1 / 7200), c, "unsubscribed", did, channel)
        return False

    def respond(self, decision: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """``answer`` and hand over at once everything scheduled, in time order: for
        callers that keep no clock (use ``time_scale=0``, so each event is at ``now_ms``)."""
        self.answer(decision, now_ms)
        return self.due(2**62)

    def due(self, now_ms: int) -> list[dict[str, Any]]:
        """The scheduled reactions whose time has come, oldest first, each with its
        ``source`` and its own time. A purchase is made now, from the cart as it is."""
        out: list[dict[str, Any]] = []
        while self._schedule and self._schedule[0][0] <= now_ms:
            at, _, cid, kind, did, channel = heapq.heappop(self._schedule)
            c = self.by_id[cid]
            if kind == "order_placed":
                out.append(self._behave(c, "purchase", kind, at))
            else:
                out.append(self._event(c, "outcome", kind, at, decision_id=did, channel=channel))
        return out

    @property
    def scheduled(self) -> int:
        """Reactions scheduled and not yet due."""
        return len(self._schedule)

    def _later(
        self, at_ms: int, delay_s: float, c: SimCustomer, kind: str, did: str, channel: str
    ) -> int:
        t = at_ms + int(delay_s * 1000 * self.time_scale)
        self._seq += 1
        heapq.heappush(self._schedule, (t, self._seq, c.customer_id, kind, did, channel))
        return t

    def expected(self, decision: dict[str, Any]) -> tuple[float, float, float] | None:
        """(chosen, random, oracle) expected conversion over the eligible marketing candidates.

        None when the decision had no marketing choice to make.
        """
        if decision.get("action_class") != "marketing":
            return None
        cid = decision["customer_id"]
        ps = [
            self.true_propensity(cid, cand["action"], cand["channel"])
            for cand in decision["candidates"]
            if cand["eligible"] and cand["action"] != "support_followup"
        ]
        if not ps:
            return None
        chosen = self.true_propensity(cid, decision["action"], decision["channel"])
        return chosen, sum(ps) / len(ps), max(ps)

    def invalid_record(self) -> tuple[str, bytes | None, bytes]:
        """A bad record as an upstream bug would send it: (source, key, value)."""
        c = self.rng.choice(self.customers)
        key = c.customer_id.encode()
        kind = self.rng.randrange(3)
        if kind == 0:
            return "web", key, b'{"event_id": "broken", "customer_id": '
        if kind == 1:
            return "web", key, b'{"event_id": "x", "customer_id": "%s", "type": "teleport"}' % key
        return "purchase", key, b'{"event_id": "y", "type": "order_placed", "time": 0}'
