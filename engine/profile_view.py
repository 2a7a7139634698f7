"""What journey conditions read of a customer's profile: ``view``, plain JSON values at a
given time, with the decayed counters read at that time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

from engine import contacts, decay
from engine.profile import ANONYMOUS, Profile

PRIORITIES = ("low", "normal", "high", "urgent")
"""Ticket priorities, lowest first (the ``support.ticket_opened`` contract's choices)."""
DAY_S = 86_400


def view(p: Profile, now_ms: int, reading: Reading | None = None) -> dict[str, Any]:
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

    With a ``reading`` (``reading_of``), only the parts holding the fields it names are
    worked out, each as the whole view has it; the others are absent.

    >>> v = view(Profile("c1", orders=2, cart={"p1": 5.0}), now_ms=0)
    >>> v["orders"], v["cart_value"], v["last_order_ms"], set(v) == VIEW_FIELDS
    (2, 5.0, None, True)
    >>> part = view(Profile("c1", orders=2), 0, reading_of({"orders"}))
    >>> part["orders"], "contacts_7d" in part
    (2, False)
    """
    doc: dict[str, Any] = {}
    now_s = now_ms // 1000
    for part in _PARTS if reading is None else reading.parts:
        part(p, now_s, doc)
    return doc


class Reading(NamedTuple):
    """The parts of ``view`` that some readers need (``reading_of``)."""

    parts: tuple[Part, ...]


Part = Callable[[Profile, int, dict[str, Any]], None]
"""A part of ``view``: puts its fields, read at a time in seconds, into the view."""


def _basics(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
    doc["customer_id"] = p.customer_id
    doc["first_seen_ms"] = p.first_seen_ms or None
    doc["last_seen_ms"] = p.last_seen_ms or None
    doc["orders"] = p.orders
    doc["total_spend"] = doc["lifetime_value"] = p.total_spend
    doc["last_order_ms"] = p.last_order_ms or None
    doc["timezone"] = p.timezone
    doc["country"] = p.country
    doc["tier"] = p.tier
    doc["csat"] = p.csat
    doc["csat_ms"] = p.csat_ms or None
    doc["nps"] = p.nps
    doc["nps_ms"] = p.nps_ms or None
    doc["opted_out"] = list(p.opted_out)


def _web(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
    doc["web_events"] = p.web_events


def _cart(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
    cart = p.cart
    cart_value = sum(cart.values())
    doc["cart"] = dict(cart)
    doc["cart_value"] = round(cart_value, 2) if cart_value else cart_value


def _activity(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
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
    doc["visits_7d"] = visits_7d
    doc["category_views_7d"] = interests
    doc["orders_30d"] = orders_30d
    doc["spend_30d"] = spend_30d


def _tickets(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
    tickets = p.open_tickets
    doc["open_tickets"] = list(tickets)
    doc["ticket_priorities"] = dict(tickets)
    doc["top_ticket_priority"] = max(tickets.values(), key=_priority_rank) if tickets else None


def _contacts(p: Profile, now_s: int, doc: dict[str, Any]) -> None:
    day_ago, week_ago = now_s - DAY_S, now_s - 7 * DAY_S
    contacts_24h: dict[str, int] = {}
    contacts_7d: dict[str, int] = {}
    last_contact: dict[str, int] = {}
    # Each channel's history unpacked once for the three counts, each count a bisection
    # of the sorted times (``contacts.count_since``, inlined: two calls less).
    for ch, packed in sorted(p.contacts.items()):
        times = contacts.unpack(packed)
        n = len(times)
        contacts_24h[ch] = n - bisect_left(times, day_ago)
        contacts_7d[ch] = n - bisect_left(times, week_ago)
        last_contact[ch] = times[-1] * 1000 if n else 0
    doc["contacts_24h"] = contacts_24h
    doc["contacts_7d"] = contacts_7d
    doc["last_contact_ms"] = last_contact


_PARTS: tuple[Part, ...] = (_basics, _web, _cart, _activity, _tickets, _contacts)
"""Every part, in the order the whole view is built."""


def _priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else 1


def _fields_of(part: Part) -> frozenset[str]:
    doc: dict[str, Any] = {}
    part(Profile(ANONYMOUS), 0, doc)
    return frozenset(doc)


_PART_FIELDS = tuple((part, _fields_of(part)) for part in _PARTS)
"""Each part with the fields it puts into the view."""
VIEW_FIELDS: frozenset[str] = frozenset().union(*(holds for _, holds in _PART_FIELDS))
"""The names ``view`` returns: what ``profile.<name>`` may read in a journey condition."""


def reading_of(fields: Collection[str] | None) -> Reading:
    """The parts of ``view`` that hold ``fields`` (every part for None, or for a name
    that is not a field): a condition reads a few fields, and the counts of contacts
    and the decayed counters cost most of the whole view.

    >>> [part.__name__ for part in reading_of({"cart_value", "orders"}).parts]
    ['_basics', '_cart']
    >>> len(reading_of(None).parts) == len(reading_of({"no_such_field"}).parts) == 6
    True
    """
    if fields is None or not VIEW_FIELDS.issuperset(fields):
        return Reading(_PARTS)
    return Reading(tuple(part for part, holds in _PART_FIELDS if holds & set(fields)))
