"""The live picture of one customer, and how each event changes it.

``apply_event`` is a pure function: the old profile and an event in, the new profile
out. The worker keeps one profile per customer in a changelog-backed table, encoded with
orjson; ``Profile.decode`` also reads every earlier form of the record (see
``_upgrade``). ``view`` is the read-only picture journey conditions see.

What comes from where:

- attributes (``timezone``, ``country``, ``tier``): a ``web.login`` or ``web.signup``
  that carries them (contract version 2); the last one applied wins. A subscription's
  ``plan`` does not set the tier: a plan names what is delivered ("coffee-monthly"), a
  tier names the customer's standing, and ``subscription_cancelled`` could not tell
  which tier to fall back to.
- recent behaviour (``recent``, see ``engine.decay``): page and product views, product
  views and cart additions by category, orders and spend, decayed over time.
- support: open tickets with their priority (``normal`` when the event names none), and
  the last CSAT and NPS score with their event time (a late, older score does not
  replace a newer one).
- consent: ``opted_out`` channels; an unsubscribed or complained outcome or an opt-out
  adds one, an opt-in removes it.
- contact history: when each channel last reached the customer (``record_contact``).
- dismissals: when the customer lately dismissed each action (``record_outcome``), which
  the contact policy's outcome-based suppression counts (``engine.contact_policy``).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import MISSING, dataclass, field, fields
from itertools import compress
from operator import ne
from typing import Any

import orjson

from engine import contacts, decay, dedup, dismissals
from engine.decay import Activity
from engine.dedup import short_hash
from engine.frozen import assembled
from engine.journey_memory import (
    JourneyMemory,
    membership_to_list,
    memory_from_doc,
)
from engine.pending import Pending
from topics.events import Event

MAX_CATEGORIES = decay.MAX_CATEGORIES
MAX_CART_ITEMS = 50
MAX_OPEN_TICKETS = 20
MAX_PENDING = 4
"""Recent decisions remembered for learning and for re-emission after a crash."""
ANONYMOUS = "anon:"
"""Key prefix of a profile known only by an anonymous id (before login or signup)."""
PRIORITIES = ("low", "normal", "high", "urgent")
"""Ticket priorities, lowest first (the ``support.ticket_opened`` contract's choices)."""
DAY_S = 86_400


@dataclass(frozen=True)
class Profile:
    """Not slotted: a profile is built once or more per event (``decode``,
    ``apply_event``, each contact), and a frozen slotted object is filled one
    ``object.__setattr__`` per field, 30 of them; an instance dict is set whole, about
    four times faster (``changed``, ``_built``). Reading a field of such a profile is no
    slower (0.09 against 0.14 µs for eight fields, the interpreter caching where each
    read site finds its field)."""

    customer_id: str
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    """Events applied, by ``source.type``, over the customer's whole history."""
    mobile_events: int = 0
    cart: dict[str, float] = field(default_factory=dict)
    """Product id -> price, as added."""
    orders: int = 0
    total_spend: float = 0.0
    """Lifetime value: order amounts less cancellations and refunds."""
    last_order_ms: int = 0
    """Event time of the latest order; 0 before the first."""
    recent: Activity = field(default_factory=Activity)
    """Decayed visits, category views, orders and spend (``engine.decay``)."""
    timezone: str | None = None
    """IANA time zone name, from the latest login or signup that gave one."""
    country: str | None = None
    """ISO 3166-1 alpha-2 code, likewise."""
    tier: str | None = None
    """The shop's name for the customer's tier, likewise."""
    open_tickets: dict[str, str] = field(default_factory=dict)
    """Open ticket id -> priority, oldest first."""
    csat: int | None = None
    """The latest CSAT score (1-5), and below its event time (0 while there is none)."""
    csat_ms: int = 0
    nps: int | None = None
    """The latest NPS score (0-10), and below its event time."""
    nps_ms: int = 0
    opted_out: tuple[str, ...] = ()
    contacts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Channel -> recent contact times, packed (``engine.contacts``)."""
    dismissals: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Action id -> recent dismissal times, packed (``engine.dismissals``)."""
    offsets: dict[str, int] = field(default_factory=dict)
    pending: tuple[Pending, ...] = ()
    decisions: int = 0
    conversions: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    """Recently applied events: short hash of (source, origin, event_id) -> event time in
    seconds, packed (``engine.dedup``)."""
    journeys: JourneyMemory = field(default_factory=JourneyMemory)
    """Where the customer is in each journey, with the timers that are due."""
    deferred: dict[str, int] = field(default_factory=dict)
    """Journey acts held back by quiet hours: act id -> when to try again (epoch ms)."""

    @property
    def anonymous(self) -> bool:
        return self.customer_id.startswith(ANONYMOUS)

    @property
    def web_events(self) -> int:
        # ``map`` over the bound ``get``: no comprehension frame (580 -> 500 ns a read).
        return sum(map(self.counts.get, _WEB_COUNTERS, _NONE_YET))

    def applied(self, topic: str, partition: int, offset: int) -> bool:
        """True when this source offset (or a later one) was already applied."""
        return self.offsets.get(f"{topic}/{partition}", -1) >= offset

    def encode(self) -> bytes:
        """JSON without the fields at their default (``decode`` fills them in), pending
        decisions as lists: about a quarter fewer bytes than orjson's own form."""
        return orjson.dumps(
            # Everything nested is converted by ``_document``; a dataclass left over is
            # an error (orjson's own form of it would be another stored format).
            _document(self),
            option=orjson.OPT_PASSTHROUGH_DATACLASS,
        )

    @classmethod
    def decode(cls, raw: bytes) -> Profile:
        return _built(_upgrade(orjson.loads(raw)))


def changed(p: Profile, **changes: Any) -> Profile:
    """``dataclasses.replace`` for profiles, cheaper: a profile changes once or more per
    event, and ``replace`` re-runs ``__init__`` with every field checked and set one
    ``object.__setattr__`` at a time. Here the instance dict is copied whole, with the
    changes in it. A name that is not a field raises, as ``replace`` would.

    >>> changed(Profile("c1"), orders=2).orders
    2
    """
    if not _FIELDS.issuperset(changes):
        raise TypeError(f"Profile has no field {next(k for k in changes if k not in _FIELDS)!r}")
    return _replaced(p, changes)


def _replaced(p: Profile, changes: dict[str, Any]) -> Profile:
    """``changed`` for a caller whose changes name fields only (``apply_event``): no
    keyword arguments packed again, no check (2,000 instructions less per event)."""
    # A fresh instance dict set whole (``assembled``), rather than the one ``vars`` makes
    # for a new object and then fills: the interpreter's fast attribute reads (a dict
    # hint per read site) apply to this one, and a profile is read some hundred times
    # per event.
    return assembled(Profile, {**vars(p), **changes})


def _document(p: Profile) -> dict[str, Any]:
    """The fields not at their default, in field order, as plain JSON values: built in
    one pass here rather than by an orjson ``default`` call per nested object (the
    profile, each pending decision, membership and counter set), each a Python call
    that tried four ``isinstance`` checks first."""
    # Kept by C iterators, no bytecode per field: the instance dict is in field order
    # (``_built``, ``changed`` and ``__init__`` all fill it so), and ``map(ne, ...)``
    # tells which to keep. A comprehension over an ``attrgetter`` of every field took
    # 34,000 instructions per profile, this 27,000 (callgrind; ``ne`` itself is 17,000).
    fields_ = vars(p)
    # The two dataclass fields compared as what their generated ``__eq__`` compares,
    # without its Python call (two per profile): the activity's instance dict (a C
    # dict comparison) and the journey memory's three dicts.
    # 42,900 -> about 40,000 instructions per stored profile (callgrind, 2,000 profiles).
    values = list(fields_.values())
    values[_RECENT] = vars(values[_RECENT])
    mem = values[_JOURNEYS]
    values[_JOURNEYS] = (mem.active, mem.last_exit_ms, mem.entries)
    doc = dict(compress(fields_.items(), map(ne, values, _DEFAULT_VALUES)))
    if "recent" in doc:
        doc["recent"] = _activity_doc(doc["recent"])
    if "pending" in doc:
        doc["pending"] = list(map(Pending.to_list, doc["pending"]))  # no comprehension call
    if "journeys" in doc:
        doc["journeys"] = _journeys_doc(doc["journeys"])
    return doc


def _activity_doc(a: Activity) -> dict[str, Any]:
    """The counters not at their default, in field order. A truth test is ``!= default``
    for each: an int against 0, a float against 0.0 (``-0.0`` is equal to it and false
    too), a dict against ``{}``. Written out: 1,600 instructions where a comprehension
    over the fields with ``getattr`` took 6,900 (callgrind)."""
    doc: dict[str, Any] = {}
    if a.at_s:
        doc["at_s"] = a.at_s
    if a.visits:
        doc["visits"] = a.visits
    if a.orders:
        doc["orders"] = a.orders
    if a.spend:
        doc["spend"] = a.spend
    if a.categories:
        doc["categories"] = a.categories
    return doc


def _journeys_doc(mem: JourneyMemory) -> dict[str, Any]:
    return {
        "active": {jid: membership_to_list(m) for jid, m in mem.active.items()},
        "last_exit_ms": mem.last_exit_ms,
        "entries": mem.entries,
    }


def _built(doc: dict[str, Any]) -> Profile:
    """``Profile(**doc)`` without the dataclass ``__init__``, which sets 30 frozen fields
    one ``object.__setattr__`` at a time (a tenth of the core's CPU went to building
    objects): the constant defaults and ``doc`` merged into the instance dict, then a
    fresh object for each default made by a factory. Raises
    TypeError for a name that is not a field or a missing ``customer_id``, as
    ``__init__`` would."""
    if "customer_id" not in doc:
        raise TypeError("Profile is missing the field 'customer_id'")
    if not _FIELDS.issuperset(doc):
        raise TypeError(f"Profile has no field {next(k for k in doc if k not in _FIELDS)!r}")
    fill = {**_CONSTANTS, **doc}  # every field, in field order
    for name, factory in _FACTORIES:
        if name not in doc:
            fill[name] = factory()
    return assembled(Profile, fill)


def _field_defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """Each field and its default; a field without one (``customer_id``) is always kept."""
    return tuple(
        (f.name, f.default_factory() if f.default_factory is not MISSING else f.default)
        for f in fields(cls)
    )


_PROFILE_DEFAULTS = _field_defaults(Profile)
_ACTIVITY_DEFAULTS = _field_defaults(Activity)
_NAMES: tuple[str, ...] = tuple(name for name, _ in _PROFILE_DEFAULTS)
_CONSTANTS: dict[str, Any] = {
    f.name: f.default if f.default is not MISSING else None for f in fields(Profile)
}
"""What ``_built`` starts from: the plain defaults, a placeholder where a factory makes
the default (``_FACTORIES``) or there is none (``customer_id``, which ``doc`` holds)."""
_FACTORIES: tuple[tuple[str, Any], ...] = tuple(
    (f.name, f.default_factory) for f in fields(Profile) if f.default_factory is not MISSING
)
_RECENT, _JOURNEYS = _NAMES.index("recent"), _NAMES.index("journeys")
_DEFAULT_VALUES = tuple(
    vars(Activity())
    if name == "recent"
    else (mem.active, mem.last_exit_ms, mem.entries)
    if name == "journeys" and isinstance(mem := default, JourneyMemory)
    else default
    for name, default in _PROFILE_DEFAULTS
)
"""Each field's default as ``_document`` compares it: the activity and the journey
memory as the values their ``__eq__`` compares."""
_FIELDS = frozenset(_NAMES)


def _upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments from a stored profile, of this form or the first one. A field
    that is absent (at its default, or added since) takes its default: only the fields
    stored need converting."""
    if "categories" in doc:
        _from_first_form(doc)
    if "opted_out" in doc:
        doc["opted_out"] = tuple(doc["opted_out"])
    if "pending" in doc:
        doc["pending"] = tuple(Pending.load(item) for item in doc["pending"])
    if "recent" in doc:
        doc["recent"] = decay.from_doc(doc["recent"])
    if "journeys" in doc:
        doc["journeys"] = memory_from_doc(doc["journeys"])
    for packed in ("contacts", "dismissals"):
        if packed in doc:
            doc[packed] = {k: tuple(times) for k, times in doc[packed].items()}
    return doc


def _from_first_form(doc: dict[str, Any]) -> None:
    """The profile as written before the recent counters (through commit 0110739), in
    this form: ``categories`` held lifetime view counts, which become the category counters,
    decaying from the time the customer was last seen; open tickets were a list of ids
    (priority ``normal``); ``seen`` held hex hashes (the same bits) and absolute times.
    Its pending
    decisions held whole decision records; ``Pending.load`` reads those."""
    counts = doc.pop("categories")
    at_s = doc["last_seen_ms"] // 1000
    doc["recent"] = {"at_s": at_s, "categories": {k: float(n) for k, n in counts.items()}}
    doc["open_tickets"] = dict.fromkeys(doc["open_tickets"], "normal")
    hashed = ((dedup.short_hash_of_hex(h), t) for h, t in doc["seen"].items())
    doc["seen"] = dedup.packed(sorted(hashed, key=lambda kv: kv[1]))


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
_WEB_COUNTERS = tuple(f"web.{t}" for t in _WEB_TYPES)
"""The ``counts`` keys ``web_events`` adds up, named once (it is read twice per event)."""
_NONE_YET = (0,) * len(_WEB_COUNTERS)
"""``web_events``' default for each counter the customer has not got."""
_ATTRIBUTES = ("timezone", "country", "tier")


def apply_event(
    p: Profile,
    ev: Event,
    *,
    topic: str,
    partition: int,
    offset: int,
    seen: dict[str, int] | None = None,
) -> Profile:
    """The profile after ``ev``; records the source offset so a replay is not re-applied,
    and ``seen``, the dedup memory with the event in it (``remembered``), when given: one
    copy of the profile instead of two."""
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
    if seen is not None:
        changes["seen"] = seen
    data = ev.data
    time_s = ev.time_ms // 1000
    if ev.source == "web":
        if data.get("device") == "mobile":
            changes["mobile_events"] = p.mobile_events + 1
        category = str(data["category"]) if data.get("category") else None
        if ev.type == "page_view":
            changes["recent"] = decay.record(p.recent, time_s, visits=1.0)
        elif ev.type == "product_view":
            changes["recent"] = decay.record(p.recent, time_s, visits=1.0, category=category)
        elif ev.type == "add_to_cart":
            changes["recent"] = decay.record(p.recent, time_s, category=category)
        if ev.type == "add_to_cart" and len(p.cart) < MAX_CART_ITEMS:
            changes["cart"] = {**p.cart, str(data["product_id"]): float(data["price"])}
        elif ev.type == "remove_from_cart":
            changes["cart"] = {k: v for k, v in p.cart.items() if k != data["product_id"]}
        elif ev.type in ("login", "signup"):  # a loop, not a comprehension (a call)
            for k in _ATTRIBUTES:
                if (value := data.get(k)) is not None:
                    changes[k] = str(value)  # (apply_event: 23,400 where 24,500)
    elif ev.source == "support":
        changes.update(_support(p, ev))
    elif ev.source == "purchase":
        amount = float(data.get("amount", 0.0))
        if ev.type == "order_placed":
            changes.update(
                orders=p.orders + 1,
                total_spend=p.total_spend + amount,
                cart={},
                last_order_ms=max(p.last_order_ms, ev.time_ms),
                recent=decay.record(p.recent, time_s, orders=1.0, spend=amount),
            )
        elif ev.type in ("order_cancelled", "refund_issued"):
            changes["total_spend"] = max(0.0, p.total_spend - amount)
            changes["recent"] = decay.record(p.recent, time_s, spend=-amount)
    elif ev.source == "consent":
        channel = data.get("channel")
        if ev.type == "opt_out" and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
        elif ev.type == "opt_in":
            changes["opted_out"] = tuple(c for c in p.opted_out if c != channel)
    elif ev.source == "outcome":
        # Conversions are counted per decision by engine.attribution, where a click and
        # the purchase it leads to are one. An unsubscribe or complaint stops marketing
        # on that channel until an opt-in.
        channel = data.get("channel")
        if ev.type in ("unsubscribed", "complained") and channel and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
    return _replaced(p, changes)


def _support(p: Profile, ev: Event) -> dict[str, Any]:
    data = ev.data
    ticket = str(data.get("ticket_id"))
    if ev.type == "ticket_opened":
        priority = data.get("priority") or p.open_tickets.get(ticket, "normal")
        opened = {**p.open_tickets, ticket: str(priority)}
        return {"open_tickets": dict(list(opened.items())[-MAX_OPEN_TICKETS:])}
    if ev.type == "ticket_resolved":
        return {"open_tickets": {t: v for t, v in p.open_tickets.items() if t != ticket}}
    if ev.type == "csat_submitted" and ev.time_ms >= p.csat_ms:
        return {"csat": int(data["score"]), "csat_ms": ev.time_ms}
    if ev.type == "nps_submitted" and ev.time_ms >= p.nps_ms:
        return {"nps": int(data["score"]), "nps_ms": ev.time_ms}
    return {}


def record_contact(p: Profile, channel: str, time_ms: int) -> Profile:
    """Remember that ``channel`` reached the customer at ``time_ms`` (the triggering
    event's time). Keeps ``engine.contacts.WINDOW_S`` and at most MAX_CONTACTS per
    channel, which is what a frequency cap needs."""
    # ``_replaced``: the field is named here, so ``changed``'s check is not needed.
    return _replaced(p, {"contacts": contacts.add(p.contacts, channel, time_ms // 1000)})


SUPPRESSING_OUTCOMES = frozenset({"dismissed"})
"""Outcomes the profile remembers per action for the contact policy's suppression. An
unsubscribe or complaint is not among them: it withdraws consent for the whole channel
(``apply_event``)."""


def record_outcome(p: Profile, action: str, outcome: str, time_ms: int) -> Profile:
    """Remember what the customer did with ``action`` at ``time_ms`` (the outcome's event
    time): a dismissal is kept, within ``engine.dismissals``' bounds; any other outcome
    leaves the profile as it is."""
    if outcome not in SUPPRESSING_OUTCOMES:
        return p
    return changed(p, dismissals=dismissals.add(p.dismissals, action, time_ms // 1000))


def seen_before(p: Profile, dedup_key: str) -> bool:
    return short_hash(dedup_key) in p.seen


def remembered(
    p: Profile, dedup_key: str, time_ms: int, *, window_ms: int, max_ids: int
) -> dict[str, int]:
    """The dedup memory with ``dedup_key`` remembered, less the ids older than the window
    and the oldest beyond ``max_ids`` (a duplicate arriving after that is applied again:
    the price of bounded state per customer). ``apply_event`` stores it."""
    return dedup.remember(
        p.seen,
        dedup_key,
        time_ms // 1000,
        now_s=max(time_ms, p.last_seen_ms) // 1000,
        window_s=window_ms // 1000,
        max_ids=max_ids,
    )


def merge(into: Profile, anon: Profile) -> Profile:
    """Fold an anonymous visitor's history into the customer they turned out to be."""
    counts = dict(into.counts)
    for k, n in anon.counts.items():
        counts[k] = counts.get(k, 0) + n
    first = [t for t in (into.first_seen_ms, anon.first_seen_ms) if t]
    return changed(
        into,
        counts=counts,
        recent=decay.combine(into.recent, anon.recent),
        mobile_events=into.mobile_events + anon.mobile_events,
        cart=dict(list({**anon.cart, **into.cart}.items())[:MAX_CART_ITEMS]),
        first_seen_ms=min(first) if first else 0,
        last_seen_ms=max(into.last_seen_ms, anon.last_seen_ms),
        seen=dedup.union(anon.seen, into.seen),
    )


def remember(p: Profile, pending: Pending) -> Profile:
    """Keep ``pending`` among the most recent decisions awaiting an outcome."""
    held = (*p.pending, pending)[-MAX_PENDING:]
    return _replaced(p, {"pending": held, "decisions": p.decisions + 1})  # as ``record_contact``


def find_pending(p: Profile, decision_id: str) -> Pending | None:
    key = short_hash(decision_id)
    return next((item for item in p.pending if item.key == key), None)


def take_pending(p: Profile, decision_id: str) -> tuple[Profile, Pending | None]:
    """Remove and return the pending decision an outcome refers to, if still held."""
    item = find_pending(p, decision_id)
    if item is None:
        return p, None
    return changed(p, pending=tuple(x for x in p.pending if x is not item)), item


def view(p: Profile, now_ms: int) -> dict[str, Any]:
    """The profile as journey conditions read it: plain JSON values, read at ``now_ms``.

    Times are epoch milliseconds, None when the thing never happened. ``*_7d`` and
    ``*_30d`` are decayed counts (``engine.decay``) with that half-life: an event counts
    1 now, 1/2 one half-life later, 1/4 two later. ``visits_7d`` counts page and product
    views; ``category_views_7d`` maps a category to its product views and cart
    additions. ``lifetime_value`` equals ``total_spend`` (order amounts less
    cancellations and refunds). ``open_tickets`` lists ids, oldest first;
    ``ticket_priorities`` maps each to low/normal/high/urgent, and
    ``top_ticket_priority`` is the highest (None with no ticket open).
    ``contacts_24h`` and ``contacts_7d`` count contacts per channel in that window
    before ``now_ms``; ``last_contact_ms`` is the latest per channel.

    >>> v = view(Profile("c1", orders=2, cart={"p1": 5.0}), now_ms=0)
    >>> v["orders"], v["cart_value"], v["last_order_ms"], set(v) == VIEW_FIELDS
    (2, 5.0, None, True)
    """
    now_s = now_ms // 1000
    recent = p.recent
    categories = recent.categories
    if now_s <= recent.at_s:
        # Read at the counters' own time (in the pipeline, after an event that recorded
        # some): ``decay.weights`` would be exactly 1, and a stored counter is rounded
        # already (``decay.Activity``), to the places this rounds it to, and ``round``
        # gives a rounded value back unchanged: no decay and no ``round`` (~3,200
        # instructions each, callgrind). With the two branches below: 20,500
        # instructions per view where it took 23,100 (the decide workload's profiles).
        visits_7d, orders_30d, spend_30d = recent.visits, recent.orders, recent.spend
        interests = dict(categories)
    elif recent.visits or recent.orders or recent.spend or categories:
        views, bought, interest = decay.weights(recent, now_s)
        # ``round`` converts to decimal and back, zero included: skipped for a zero,
        # which it returns unchanged (most customers have no orders, no spend).
        visits, orders, spend = recent.visits * views, recent.orders * bought, recent.spend * bought
        visits_7d = round(visits, 3) if visits else visits
        orders_30d = round(orders, 3) if orders else orders
        spend_30d = round(spend, 2) if spend else spend
        # No comprehension (a call) for no categories.
        interests = {k: round(v * interest, 3) for k, v in categories.items()} if categories else {}
    else:  # nothing recorded yet: zeros at any time, without the three powers of 0.5
        visits_7d = orders_30d = spend_30d = 0.0
        interests = {}
    top = max(p.open_tickets.values(), key=_priority_rank, default=None) if p.open_tickets else None
    cart = p.cart
    day_ago, week_ago = now_s - DAY_S, now_s - 7 * DAY_S
    contacts_24h: dict[str, int] = {}
    contacts_7d: dict[str, int] = {}
    last_contact: dict[str, int] = {}
    # Each channel's history unpacked once for the three counts (with the categories'
    # comprehension skipped below, 48k instructions per call down to 45k), each count
    # a bisection of the sorted times (``contacts.count_since``, inlined: two calls less).
    for ch, packed in sorted(p.contacts.items()):
        times = contacts.unpack(packed)
        n = len(times)
        contacts_24h[ch] = n - bisect_left(times, day_ago)
        contacts_7d[ch] = n - bisect_left(times, week_ago)
        last_contact[ch] = times[-1] * 1000 if n else 0
    cart_value = sum(cart.values())
    return {
        "customer_id": p.customer_id,
        "first_seen_ms": p.first_seen_ms or None,
        "last_seen_ms": p.last_seen_ms or None,
        "web_events": p.web_events,
        "orders": p.orders,
        "total_spend": p.total_spend,
        "lifetime_value": p.total_spend,
        "last_order_ms": p.last_order_ms or None,
        "cart": dict(cart),
        "cart_value": round(cart_value, 2) if cart_value else cart_value,
        "visits_7d": visits_7d,
        "category_views_7d": interests,
        "orders_30d": orders_30d,
        "spend_30d": spend_30d,
        "timezone": p.timezone,
        "country": p.country,
        "tier": p.tier,
        "open_tickets": list(p.open_tickets),
        "ticket_priorities": dict(p.open_tickets),
        "top_ticket_priority": top,
        "csat": p.csat,
        "csat_ms": p.csat_ms or None,
        "nps": p.nps,
        "nps_ms": p.nps_ms or None,
        "opted_out": list(p.opted_out),
        "contacts_24h": contacts_24h,
        "contacts_7d": contacts_7d,
        "last_contact_ms": last_contact,
    }


def _priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else 1


VIEW_FIELDS: frozenset[str] = frozenset(view(Profile(ANONYMOUS), now_ms=0))
"""The names ``view`` returns: what ``profile.<name>`` may read in a journey condition."""
