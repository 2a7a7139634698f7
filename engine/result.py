"""What one record did: the core's :class:`Result` (engine/pipeline.py), which the worker's
handler carries out (engine/handler.py) and its metrics count (engine/result_metrics.py),
and the result of a record the core rejects."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.attribution import Lesson
from engine.journey_runtime import Command
from engine.profile import Profile
from engine.records import Record, Send
from topics.catalogue import TopicNames
from topics.deadletter import dead_letter_headers
from topics.decisions import Decision
from topics.events import Event, Rejection


@dataclass(slots=True)
class Result:
    """What one record did."""

    status: str
    """rejected, forwarded, replayed, duplicate, erased, applied, decided or learned."""
    event: Event | None = None
    writes: dict[str, Profile | None] = field(default_factory=dict)
    """Profiles to store (None deletes), by profile key."""
    links: dict[str, str] = field(default_factory=dict)
    """Identity links to store: anonymous id -> customer id."""
    sends: list[Send] = field(default_factory=list)
    rejection: Rejection | None = None
    decision: Decision | None = None
    """The next-best-action decision, if the record was a decision point."""
    lessons: list[Lesson] = field(default_factory=list)
    """What the decisions this record settled taught (engine/attribution.py)."""
    late_outcomes: int = 0
    """Outcomes that came after their decision's attribution window."""
    revenue: float = 0.0
    """A purchase's amount, when it was credited to a decision."""
    journey_decisions: list[Decision] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    """Everything the journeys did (entries, acts, exits), for metrics."""
    timers: dict[str, int | None] = field(default_factory=dict)
    """Customers whose next journey timer changed: key -> wake time (None: no timer)."""
    group: str | None = None
    """A known customer's experiment group, ``treated`` or ``holdout``; None otherwise."""
    new_customer: bool = False
    """The event created the customer's profile."""
    first_order: bool = False
    """The event is the customer's first order."""


def applied(ev: Event) -> Result:
    """``Result("applied", event=ev)``, what every applied event starts from, without
    ``__init__``'s keyword matching and seven factory calls: 4,600 instructions where
    ``__init__`` took 7,800 (callgrind).

    >>> ev = Event("web", "search", "e1", "c1", 0, {})
    >>> applied(ev) == Result("applied", event=ev)
    True
    """
    r = _new(Result)
    r.status, r.event, r.writes, r.links, r.sends = "applied", ev, {}, {}, []
    r.rejection, r.decision, r.lessons, r.late_outcomes, r.revenue = None, None, [], 0, 0.0
    r.journey_decisions, r.commands, r.timers = [], [], {}
    r.group, r.new_customer, r.first_order = None, False, False
    return r


_new = object.__new__


def reject(rec: Record, why: Rejection, names: TopicNames, *, now_ms: int) -> Result:
    """The dead-letter record for ``rec``: original key, value and headers, plus the reason."""
    headers = dead_letter_headers(
        list(rec.headers),
        error_class=why.error_class,
        message=why.message,
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        rejected_at_ms=now_ms,
    )
    return Result("rejected", rejection=why, sends=[Send(names.dlq, rec.key, rec.value, headers)])
