"""The live picture of one customer: the record the worker keeps per customer, and its
stored form.

The worker keeps one profile per customer in a changelog-backed table, encoded with
orjson; ``Profile.decode`` also reads every earlier form of the record (see
``_upgrade``). A profile is never changed in place: ``changed`` makes the next one.
How each event changes it is ``engine.profile_updates``; what journey conditions read
of it, ``engine.profile_view``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from itertools import compress
from operator import ne
from typing import Any

import orjson

from engine import decay, dedup
from engine.decay import Activity
from engine.frozen import assembled
from engine.journey_memory import (
    JourneyMemory,
    membership_to_list,
    memory_from_doc,
)
from engine.pending import Pending

MAX_CATEGORIES = decay.MAX_CATEGORIES
MAX_CART_ITEMS = 50
MAX_OPEN_TICKETS = 20
MAX_PENDING = 4
"""Recent decisions remembered for learning and for re-emission after a crash."""
ANONYMOUS = "anon:"
"""Key prefix of a profile known only by an anonymous id (before login or signup)."""


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
    return replaced(p, changes)


def replaced(p: Profile, changes: dict[str, Any]) -> Profile:
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
