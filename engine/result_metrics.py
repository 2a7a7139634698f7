"""What one record did, counted: the service-level metrics of ``engine.metrics`` fed from
the core's :class:`engine.result.Result`, after the worker carried it out.

Labels are bounded (sources, event types, actions, channels, reasons, journeys, groups),
never customer ids.
"""

from __future__ import annotations

import time

from engine.contact_policy import REASONS
from engine.decide import HOLDOUT
from engine.journey_runtime import Entered, Exited
from engine.metrics import Metrics
from engine.orchestrate import DEFERRED
from engine.pending import TIMER_SOURCE
from engine.records import Record
from engine.result import Result
from topics.catalogue import TopicNames
from topics.decisions import Candidate, is_kept

SUPPRESSION_REASONS = frozenset({*REASONS, HOLDOUT})
"""Exclusions counted as suppressions: the contact policy's reasons and the holdout."""


def observe_result(
    metrics: Metrics, names: TopicNames, rec: Record, result: Result, started: float
) -> None:
    metrics.processing.observe(time.perf_counter() - started)
    if result.event is None:
        source = names.source_of(rec.topic) or "unknown"
        metrics.events.labels(source, "invalid").inc()
    else:
        metrics.events.labels(result.event.source, result.event.type).inc()
    if result.rejection is not None:
        metrics.dead_letters.labels(result.rejection.error_class).inc()
    elif result.status == "replayed":
        metrics.replayed.inc()
    elif result.status == "duplicate":
        metrics.duplicates.inc()
    elif result.status == "forwarded":
        metrics.forwarded.inc()
    elif result.decision is not None:
        d = result.decision
        metrics.decisions.labels(d.action, d.channel or "none").inc()
        metrics.latency.observe(max(0.0, (d.decided_at_ms - d.event_time_ms) / 1000))
        if d.explored:
            metrics.explored.inc()
    # Most records teach nothing and move no journey: no call to find that out.
    if result.lessons or result.revenue or result.late_outcomes:
        metrics.learned(result.lessons, result.revenue, result.late_outcomes)
    if result.commands or result.journey_decisions or result.status in _TIMER_STATUSES:
        _observe_journeys(metrics, result)
    _observe_groups(metrics, result)


_TIMER_STATUSES = frozenset({"timer", "stale"})
"""The statuses of a timer nudge, which ``_observe_journeys`` counts."""


def _observe_groups(metrics: Metrics, result: Result) -> None:
    """Suppressions, deferrals, and the treated and holdout groups' customers and orders."""
    for d in (result.decision, *result.journey_decisions):
        if d is None:
            continue
        for reason, n in _suppressions(d.candidates):
            metrics.suppressions.labels(reason).inc(n)
        if d.journey is not None and not d.acts and d.reasons[-1].startswith(DEFERRED):
            metrics.deferred.inc()
    if result.group is None:
        return
    if result.new_customer:
        metrics.group_customers.labels(result.group).inc()
    ev = result.event
    if ev is not None and ev.source == "purchase" and ev.type == "order_placed":
        metrics.group_orders.labels(result.group).inc()
        amount = ev.data.get("amount")
        if isinstance(amount, int | float) and amount > 0:
            metrics.group_revenue.labels(result.group).inc(amount)
        if result.first_order:
            metrics.group_converted.labels(result.group).inc()


def _suppressions(candidates: tuple[Candidate, ...]) -> tuple[tuple[str, int], ...]:
    """How many of ``candidates`` each suppression reason excluded.

    Counted first, then added once per reason: a decision point has some nine
    candidates, most of them excluded for the same one or two reasons. A plain dict: a
    ``Counter`` of them cost 2.5 µs, most of it its __init__ and checks. And counted once
    for the tuples the decide step shares between decisions (``is_kept``): most decision
    points exclude every candidate, and their candidates are then one of a few such
    tuples, which come back here again and again: ~3,800 instructions less per decision
    point of ``make bench``'s workload, under 1% of the handler's path (callgrind)."""
    known = _COUNTED.get(id(candidates))
    if known is not None and known[0] is candidates:
        return known[1]
    suppressed: dict[str, int] = {}
    for c in candidates:
        if (reason := c.excluded_by) in SUPPRESSION_REASONS:
            suppressed[reason] = suppressed.get(reason, 0) + 1
    counts = tuple(suppressed.items())
    if is_kept(candidates):
        if len(_COUNTED) >= COUNTED_TUPLES:
            _COUNTED.clear()
        # Held with its counts, so its id is not another tuple's while it is here.
        _COUNTED[id(candidates)] = (candidates, counts)
    return counts


COUNTED_TUPLES = 1_024
"""Shared candidate tuples whose counts are kept (``_suppressions``), all forgotten when
full (a catalogue of many arms could make many combinations of reasons)."""
_COUNTED: dict[int, tuple[tuple[Candidate, ...], tuple[tuple[str, int], ...]]] = {}


def _observe_journeys(metrics: Metrics, result: Result) -> None:
    for command in result.commands:
        if isinstance(command, Exited):
            # The reason's kind only: "exit criteria: <rule>" would make labels unbounded.
            kind = "exit:" + command.reason.split(":", 1)[0].replace(" ", "_")
        else:
            kind = "entered" if isinstance(command, Entered) else "act"
        metrics.journey_steps.labels(journey=command.journey_id, kind=kind).inc()
    for d in result.journey_decisions:
        metrics.decisions.labels(action=d.action, channel=d.channel or "none").inc()
        delay = max(0.0, (d.decided_at_ms - d.event_time_ms) / 1000)
        if d.event_source == TIMER_SOURCE:
            metrics.timer_delay.observe(delay)
        else:
            metrics.latency.observe(delay)
    if result.status == "timer":
        metrics.timers_fired.labels(result="fired").inc()
    elif result.status == "stale":
        metrics.timers_fired.labels(result="stale").inc()
