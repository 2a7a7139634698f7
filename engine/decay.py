"""Recent behaviour: counters that fade exponentially with time, read at a given moment.

A decayed counter is a value and the time it is valid at. An event adds 1 (or an
amount) at its own time; reading at a later ``now`` multiplies by ``0.5 ** (elapsed /
half_life)``. Nothing here reads a clock: the time is always a parameter, so a replay of
the same events gives the same values.

The counters of one customer share one as-of time (:attr:`Activity.at_s`): every update
brings all of them forward to it, which costs one time field instead of one per counter.
An event older than that time (a late event) is added already decayed by its age, so
the result does not depend on the order in which events arrive. Reading at a time before
``at_s`` returns the stored values: a counter never grows by being read.

Stored values are rounded (counts to 3 decimals, money to cents): the error is at most
half a unit of the last place per update and fades with the value, while the encoded
profile stays small. A category whose count rounds to zero is forgotten.

>>> a = record(Activity(), 0, visits=1.0)
>>> record(a, 0, visits=1.0).visits
2.0
>>> at(a, VISITS_HALF_LIFE_S).visits  # one half-life later
0.5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.frozen import assembled

DAY_S = 86_400

VISITS_HALF_LIFE_S = 7 * DAY_S
"""Page and product views. Browsing intent fades within about a week (the consideration
window most shops measure cart recovery and retargeting against); a shorter half-life
would let one quiet weekend erase an active customer."""
CATEGORY_HALF_LIFE_S = 7 * DAY_S
"""Product views and cart additions per category: interest in a category fades with the
browsing it comes from, so it shares the visits' half-life."""
ORDERS_HALF_LIFE_S = 30 * DAY_S
"""Orders and spend. Typical retail buys monthly at most: with a month's half-life a
regular customer's counter stays near its steady level between orders, and one who
stopped falls to a quarter within two months (the win-back journey also waits 30 days)."""

MAX_CATEGORIES = 16
"""Category counters kept per customer; the least viewed is dropped beyond this."""


@dataclass(frozen=True)
class Activity:
    """A customer's decayed counters, all valid at ``at_s`` (epoch seconds).

    Not slotted, for the reason ``engine.profile.Profile`` is not: ``record`` (most web
    events) sets the instance dict whole: 5,500 instructions where ``__init__`` with
    keywords, five ``object.__setattr__`` calls, took 12,200 (callgrind).

    A profile's counters are rounded as stored (see the module docstring): ``record``,
    ``combine`` and ``from_doc`` (of what those stored) make them so, and only ``at``'s
    unrounded ones, never stored, are not. ``engine.profile_view.view`` relies on it: read
    at ``at_s``, it returns them without rounding them again."""

    at_s: int = 0
    visits: float = 0.0
    """Page and product views (not sessions: most upstream events carry no session id)."""
    orders: float = 0.0
    spend: float = 0.0
    categories: dict[str, float] = field(default_factory=dict)
    """Product views and cart additions by product category, at most MAX_CATEGORIES."""


def factor(elapsed_s: int, half_life_s: int) -> float:
    """What one unit is worth ``elapsed_s`` later; never more than 1.

    >>> factor(14 * DAY_S, 7 * DAY_S), factor(-5, 7 * DAY_S)
    (0.25, 1.0)
    """
    return float(0.5 ** (max(0, elapsed_s) / half_life_s))


def at(a: Activity, now_s: int) -> Activity:
    """``a`` decayed to ``now_s``, unrounded; unchanged when ``now_s`` is not later."""
    if now_s <= a.at_s:
        return a
    elapsed = now_s - a.at_s  # > 0: ``factor`` without its call and clamp, same floats
    views = 0.5 ** (elapsed / VISITS_HALF_LIFE_S)
    bought = 0.5 ** (elapsed / ORDERS_HALF_LIFE_S)
    interest = 0.5 ** (elapsed / CATEGORY_HALF_LIFE_S)
    return Activity(
        at_s=now_s,
        visits=a.visits * views,
        orders=a.orders * bought,
        spend=a.spend * bought,
        categories={k: v * interest for k, v in a.categories.items()},
    )


def weights(a: Activity, now_s: int) -> tuple[float, float, float]:
    """What ``at`` multiplies the visits, the orders and spend, and the categories of
    ``a`` by: for a reader that needs the values, not a new Activity (``view``). 1.0
    each when ``now_s`` is not later, which leaves a value exactly as stored.

    >>> weights(Activity(at_s=0), VISITS_HALF_LIFE_S)[0], weights(Activity(at_s=9), 5)
    (0.5, (1.0, 1.0, 1.0))
    """
    if now_s <= a.at_s:
        return 1.0, 1.0, 1.0
    elapsed = now_s - a.at_s
    return (
        0.5 ** (elapsed / VISITS_HALF_LIFE_S),
        0.5 ** (elapsed / ORDERS_HALF_LIFE_S),
        0.5 ** (elapsed / CATEGORY_HALF_LIFE_S),
    )


def record(
    a: Activity,
    time_s: int,
    *,
    visits: float = 0.0,
    orders: float = 0.0,
    spend: float = 0.0,
    category: str | None = None,
) -> Activity:
    """``a`` with one event at ``time_s`` counted, rounded for storage. ``spend`` may be
    negative (a refund); no counter goes below zero.

    The same arithmetic as ``at`` followed by adding the event decayed by its age, in
    one pass: most events are the latest of their customer, so their age is 0 and their
    weight exactly 1, and the decayed counters need no object of their own (this ran on
    every web event).

    >>> from dataclasses import fields
    >>> b = record(Activity(at_s=100, visits=1.0), 90, visits=1.0)  # 10 s late
    >>> b.at_s, b.visits, b == Activity(100, 2.0), list(vars(b)) == [f.name for f in fields(b)]
    (100, 2.0, True, True)
    """
    elapsed = time_s - a.at_s
    if elapsed > 0:  # brought forward to the event's time; the event counts 1
        at_s = time_s
        views = 0.5 ** (elapsed / VISITS_HALF_LIFE_S)
        bought = 0.5 ** (elapsed / ORDERS_HALF_LIFE_S)
        interest = 0.5 ** (elapsed / CATEGORY_HALF_LIFE_S)
        now_visits, now_orders, now_spend = a.visits * views, a.orders * bought, a.spend * bought
        categories = {k: v * interest for k, v in a.categories.items()}
        weight = weight_bought = weight_interest = 1.0
    else:  # on time (age 0, weight 1) or late: the counters stay as of ``a.at_s``
        at_s, age = a.at_s, -elapsed
        now_visits, now_orders, now_spend = a.visits, a.orders, a.spend
        categories = dict(a.categories)
        weight = factor(age, VISITS_HALF_LIFE_S)
        weight_bought = factor(age, ORDERS_HALF_LIFE_S)
        weight_interest = factor(age, CATEGORY_HALF_LIFE_S)
    if category is not None:
        categories[category] = categories.get(category, 0.0) + weight_interest
        if len(categories) > MAX_CATEGORIES:
            del categories[min(categories, key=categories.__getitem__)]
    spent = now_spend + spend * weight_bought
    return assembled(
        Activity,
        {
            "at_s": at_s,
            "visits": _count(now_visits + visits * weight),
            "orders": _count(now_orders + orders * weight_bought),
            "spend": max(0.0, round(spent, 2)) if spent else 0.0,
            "categories": {k: c for k, v in categories.items() if (c := round(v, 3)) > 0.0},
        },
    )


def from_doc(doc: dict[str, Any]) -> Activity:
    """``Activity(**doc)`` for a stored profile's counters (those not at their default),
    the instance dict set whole as ``record`` does, in field order. Raises TypeError for
    a name that is not a field, as ``__init__`` would.

    >>> from_doc({"visits": 2.0}) == Activity(visits=2.0), from_doc({}).categories
    (True, {})
    """
    if not _ACTIVITY_FIELDS.issuperset(doc):
        stray = next(k for k in doc if k not in _ACTIVITY_FIELDS)
        raise TypeError(f"Activity has no field {stray!r}")
    fill = {**_ACTIVITY_CONSTANTS, **doc}  # every field, in field order
    if "categories" not in doc:
        fill["categories"] = {}
    return assembled(Activity, fill)


_ACTIVITY_CONSTANTS: dict[str, Any] = {
    "at_s": 0,
    "visits": 0.0,
    "orders": 0.0,
    "spend": 0.0,
    "categories": None,
}
"""The defaults ``from_doc`` starts from, in field order; ``categories`` made fresh."""
_ACTIVITY_FIELDS = frozenset(_ACTIVITY_CONSTANTS)


def combine(a: Activity, b: Activity) -> Activity:
    """Both customers' counters as one (an anonymous visitor's folded into the customer)."""
    now = max(a.at_s, b.at_s)
    x, y = at(a, now), at(b, now)
    categories = {**x.categories}
    for k, v in y.categories.items():
        categories[k] = categories.get(k, 0.0) + v
    top = sorted(categories.items(), key=lambda kv: -kv[1])[:MAX_CATEGORIES]
    return Activity(
        at_s=now,
        visits=_count(x.visits + y.visits),
        orders=_count(x.orders + y.orders),
        spend=round(x.spend + y.spend, 2),
        categories={k: c for k, v in top if (c := _count(v)) > 0.0},
    )


def _count(value: float) -> float:
    """Rounded for storage, never below zero. ``round`` converts to decimal and back,
    zero included, and most counters of most customers are zero: a zero skips it."""
    return max(0.0, round(value, 3)) if value else 0.0
