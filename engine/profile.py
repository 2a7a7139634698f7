"""The live picture of one customer, and how each event changes it.

``apply_event`` is a pure function: the old profile and an event in, the new profile
out. The worker keeps one profile per customer in a changelog-backed table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from engine.journey_memory import JourneyMemory, memory_from_doc
from topics.events import Event

MAX_CATEGORIES = 16
"""Category view counters kept per customer; the least viewed is dropped beyond this."""
MAX_CART_ITEMS = 50
MAX_OPEN_TICKETS = 20
MAX_PENDING = 4
"""Recent decisions remembered for learning and for re-emission after a crash."""
ANONYMOUS = "anon:"
"""Key prefix of a profile known only by an anonymous id (before login or signup)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A decision awaiting its outcome. ``record`` is the decision as published: it holds
    the features it was scored on (for learning) and is re-sent if a crash lost it."""

    decision_id: str
    event_id: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Profile:
    customer_id: str
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    mobile_events: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    cart: dict[str, float] = field(default_factory=dict)
    open_tickets: tuple[str, ...] = ()
    orders: int = 0
    total_spend: float = 0.0
    opted_out: tuple[str, ...] = ()
    offsets: dict[str, int] = field(default_factory=dict)
    pending: tuple[Pending, ...] = ()
    decisions: int = 0
    conversions: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    """Recently applied events: short hash of (source, origin, event_id) -> event time, s."""
    journeys: JourneyMemory = field(default_factory=JourneyMemory)
    """Where the customer is in each journey, with the timers that are due."""

    @property
    def anonymous(self) -> bool:
        return self.customer_id.startswith(ANONYMOUS)

    @property
    def web_events(self) -> int:
        return sum(self.counts.get(f"web.{t}", 0) for t in _WEB_TYPES)

    def applied(self, topic: str, partition: int, offset: int) -> bool:
        """True when this source offset (or a later one) was already applied."""
        return self.offsets.get(f"{topic}/{partition}", -1) >= offset

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Profile:
        doc = orjson.loads(raw)
        doc["open_tickets"] = tuple(doc["open_tickets"])
        doc["opted_out"] = tuple(doc["opted_out"])
        doc["pending"] = tuple(Pending(**p) for p in doc["pending"])
        doc["journeys"] = memory_from_doc(doc.get("journeys"))
        return cls(**doc)


_WEB_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "login",
    "signup",
)


def apply_event(p: Profile, ev: Event, *, topic: str, partition: int, offset: int) -> Profile:
    """The profile after ``ev``; records the source offset so a replay is not re-applied."""
    counts = dict(p.counts)
    counter = f"{ev.source}.{ev.type}"
    counts[counter] = counts.get(counter, 0) + 1
    changes: dict[str, Any] = {
        "counts": counts,
        "first_seen_ms": ev.time_ms if p.first_seen_ms == 0 else p.first_seen_ms,
        # Late events must not move recency backwards.
        "last_seen_ms": max(p.last_seen_ms, ev.time_ms),
        "offsets": {**p.offsets, f"{topic}/{partition}": offset},
    }
    data = ev.data
    if ev.source == "web":
        if data.get("device") == "mobile":
            changes["mobile_events"] = p.mobile_events + 1
        if ev.type in ("product_view", "add_to_cart") and data.get("category"):
            changes["categories"] = _bump(p.categories, str(data["category"]))
        if ev.type == "add_to_cart" and len(p.cart) < MAX_CART_ITEMS:
            changes["cart"] = {**p.cart, str(data["product_id"]): float(data["price"])}
        elif ev.type == "remove_from_cart":
            changes["cart"] = {k: v for k, v in p.cart.items() if k != data["product_id"]}
    elif ev.source == "support":
        ticket = data.get("ticket_id")
        if ev.type == "ticket_opened" and ticket not in p.open_tickets:
            changes["open_tickets"] = (*p.open_tickets, str(ticket))[-MAX_OPEN_TICKETS:]
        elif ev.type == "ticket_resolved":
            changes["open_tickets"] = tuple(t for t in p.open_tickets if t != ticket)
    elif ev.source == "purchase":
        amount = float(data.get("amount", 0.0))
        if ev.type == "order_placed":
            changes.update(orders=p.orders + 1, total_spend=p.total_spend + amount, cart={})
        elif ev.type in ("order_cancelled", "refund_issued"):
            changes["total_spend"] = max(0.0, p.total_spend - amount)
    elif ev.source == "consent":
        channel = data.get("channel")
        if ev.type == "opt_out" and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
        elif ev.type == "opt_in":
            changes["opted_out"] = tuple(c for c in p.opted_out if c != channel)
    elif ev.source == "outcome":
        if ev.type == "converted":
            changes["conversions"] = p.conversions + 1
        # An unsubscribe or complaint stops marketing on that channel until an opt-in.
        channel = data.get("channel")
        if ev.type in ("unsubscribed", "complained") and channel and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
    return replace(p, **changes)


def seen_before(p: Profile, dedup_key: str) -> bool:
    return _short_hash(dedup_key) in p.seen


def mark_seen(p: Profile, dedup_key: str, time_ms: int, *, window_ms: int, max_ids: int) -> Profile:
    """Remember ``dedup_key``; forget ids older than the window, and the oldest beyond
    ``max_ids`` (a duplicate arriving after that is applied again: the price of bounded
    state per customer)."""
    now_s = max(time_ms, p.last_seen_ms) // 1000
    horizon = now_s - window_ms // 1000
    kept = {h: t for h, t in p.seen.items() if t >= horizon}
    kept[_short_hash(dedup_key)] = time_ms // 1000
    if len(kept) > max_ids:
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-max_ids:])
    return replace(p, seen=kept)


def merge(into: Profile, anon: Profile) -> Profile:
    """Fold an anonymous visitor's history into the customer they turned out to be."""
    counts = dict(into.counts)
    for k, n in anon.counts.items():
        counts[k] = counts.get(k, 0) + n
    categories = dict(into.categories)
    for k, n in anon.categories.items():
        categories[k] = categories.get(k, 0) + n
    categories = dict(sorted(categories.items(), key=lambda kv: -kv[1])[:MAX_CATEGORIES])
    first = [t for t in (into.first_seen_ms, anon.first_seen_ms) if t]
    return replace(
        into,
        counts=counts,
        categories=categories,
        mobile_events=into.mobile_events + anon.mobile_events,
        cart=dict(list({**anon.cart, **into.cart}.items())[:MAX_CART_ITEMS]),
        first_seen_ms=min(first) if first else 0,
        last_seen_ms=max(into.last_seen_ms, anon.last_seen_ms),
        seen={**anon.seen, **into.seen},
    )


def _short_hash(text: str) -> str:
    # 48 bits: a false "duplicate" needs two of one customer's few dozen recent ids to
    # collide, about 1 in 10^11 per event; 12 characters keep the profile small.
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def remember(p: Profile, pending: Pending) -> Profile:
    """Keep ``pending`` among the most recent decisions awaiting an outcome."""
    return replace(p, pending=(*p.pending, pending)[-MAX_PENDING:], decisions=p.decisions + 1)


def take_pending(p: Profile, decision_id: str) -> tuple[Profile, Pending | None]:
    """Remove and return the pending decision an outcome refers to, if still held."""
    for item in p.pending:
        if item.decision_id == decision_id:
            rest = tuple(x for x in p.pending if x.decision_id != decision_id)
            return replace(p, pending=rest), item
    return p, None


def _bump(counter: dict[str, int], key: str) -> dict[str, int]:
    out = {**counter, key: counter.get(key, 0) + 1}
    if len(out) > MAX_CATEGORIES:
        del out[min(out, key=out.__getitem__)]
    return out
