"""``segue evaluate``'s data: logged decisions joined to their outcomes, as a snapshot.

A decision counts for off-policy evaluation when it is a next-best-action decision
(``journey`` is null: a journey step is no draw among arms), not in the holdout (no
marketing could be taken for it), carries its ``propensity`` (a decision re-sent after
a restart does not) and was decided long enough ago for its attribution window to have
closed. Its reward is 1 when a ``clicked`` or ``converted`` outcome names its id with an
event time at most the window after the decision, else 0. The arms are the ones the
logging policy drew from: the eligible service actions when there are any (the engine
puts them first and never explores them), else every eligible candidate.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import TopicPartition

from engine.attribution import REWARDS
from engine.journey_loader import default_actions
from engine.logread import (
    bounds,
    decode_decision,
    partition_count,
    read_ranges,
    snapshot_consumer,
)
from engine.settings import Settings
from models.evaluate import NONE, Logged
from topics.catalogue import TopicNames
from topics.decisions import Decision
from topics.events import Event, Rejection, parse_event

POSITIVE = frozenset(outcome for outcome, reward in REWARDS.items() if reward)
"""Outcome types that earn a reward of 1: the worker's own (engine/attribution.py)."""

HELD_BACK = "held back:"
"""How a decision's reasons start the line that says the arm it drew was not sent: its
propensity is that of an arm the record no longer names. Workers since the contact
policy no longer hold decisions back (the policy refuses the candidates instead); logs
they wrote before it still hold such records."""

SEEK_SLACK_MS = 3_600_000
"""How far before ``since`` the read starts by record timestamp: a record's timestamp is
its produce time, a little after the decision, and the producer's clock may differ from
the worker's; the window itself is applied to ``decided_at_ms``."""

CLASSES: Mapping[str, str] = {a.action_id: a.action_class for a in default_actions()}


@dataclass
class Tally:
    """What the read came across, for the report."""

    decisions: int = 0
    """Readable decisions decided in the time range."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Decisions in the range not evaluated, by why."""
    unreadable_decisions: int = 0
    outcomes: int = 0
    """Outcome records read."""
    unreadable_outcomes: int = 0
    attributed: int = 0
    """Positive outcomes (clicked/converted) credited to an evaluated decision."""
    too_late: int = 0
    """Positive outcomes for an evaluated decision that came after its window."""

    @property
    def evaluated(self) -> int:
        return self.decisions - sum(self.skipped.values())


class Attribution:
    """Decisions in, outcomes in, logged decisions with rewards out. No I/O.

    >>> a = Attribution(window_ms=1000, now_ms=10_000)
    >>> from topics.decisions import Candidate
    >>> d = Decision("d-1", "c", "e", "web", "search", 0, "discount_offer", "sms",
    ...     "marketing", 0.4, False, (), "m/1",
    ...     (Candidate("discount_offer", "sms", True, None, 0.4, 0.4),), propensity=0.95)
    >>> a.add_decision(d)
    >>> a.add_outcome(Event("outcome", "converted", "o-1", "c", 500, {"decision_id": "d-1"}))
    >>> [(x.action, x.reward) for x in a.logs()], a.tally.attributed
    ([('discount_offer:sms', 1.0)], 1)
    """

    def __init__(
        self,
        *,
        window_ms: int,
        now_ms: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
        classes: Mapping[str, str] = CLASSES,
    ) -> None:
        self.window_ms, self.now_ms = window_ms, now_ms
        self.since_ms, self.until_ms = since_ms, until_ms
        self.classes = classes
        self.tally = Tally()
        self._seen: set[str] = set()
        self._logged: dict[str, Logged] = {}
        self._decided_at: dict[str, int] = {}
        self._credited: set[str] = set()

    def add_decision(self, d: Decision) -> None:
        if (self.since_ms is not None and d.decided_at_ms < self.since_ms) or (
            self.until_ms is not None and d.decided_at_ms >= self.until_ms
        ):
            return
        self.tally.decisions += 1
        why = self._skip_reason(d)
        self._seen.add(d.decision_id)
        if why is not None:
            self.tally.skipped[why] += 1
            return
        arms = self._arms(d)
        action = f"{d.action}:{d.channel}" if d.acts else NONE
        assert d.propensity is not None
        if action != NONE and action not in arms:
            self.tally.skipped["logged action not among the arms it was drawn from"] += 1
            return
        eligible = [c for c in d.candidates if c.eligible]
        self._logged[d.decision_id] = Logged(
            arms=arms,
            action=action,
            propensity=d.propensity,
            reward=0.0,
            scores={f"{c.action}:{c.channel}": c.score or 0.0 for c in eligible},
            priorities={f"{c.action}:{c.channel}": c.priority or 0.0 for c in eligible},
            features=d.features,
        )
        self._decided_at[d.decision_id] = d.decided_at_ms

    def add_outcome(self, ev: Event) -> None:
        """Credit a click or conversion to the decision it names, within the window."""
        did = str(ev.data.get("decision_id", ""))
        if ev.type not in POSITIVE or did not in self._logged or did in self._credited:
            return
        if ev.time_ms - self._decided_at[did] > self.window_ms:
            self.tally.too_late += 1
            return
        self._credited.add(did)
        self._logged[did] = replace(self._logged[did], reward=1.0)
        self.tally.attributed += 1

    def logs(self) -> list[Logged]:
        """The evaluated decisions, in the order they were read."""
        return list(self._logged.values())

    def by_id(self) -> Mapping[str, Logged]:
        """The evaluated decisions by decision id, in the order they were read."""
        return dict(self._logged)

    def _skip_reason(self, d: Decision) -> str | None:
        if d.decision_id in self._seen:
            return "duplicate decision id (re-sent or replayed)"
        if d.journey is not None:
            return "journey decision"
        if d.holdout:
            return "holdout"
        if d.propensity is None:
            return "no propensity recorded"
        if not 0.0 < d.propensity <= 1.0:
            return "propensity out of (0, 1]"
        if any(r.startswith(HELD_BACK) for r in d.reasons):
            return "held back after the draw"
        if d.decided_at_ms + self.window_ms > self.now_ms:
            return "attribution window still open"
        return None

    def _arms(self, d: Decision) -> tuple[str, ...]:
        eligible = [c for c in d.candidates if c.eligible]
        service = [c for c in eligible if self.classes.get(c.action, "marketing") != "marketing"]
        return tuple(f"{c.action}:{c.channel}" for c in (service or eligible))


async def replay(
    settings: Settings,
    attribution: Attribution,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> None:
    """Read the decision log, then the outcome topic, into ``attribution``.

    1. Each topic's end offsets are taken before its read: the snapshot it stops at.
    2. Decisions are read from ``since`` (less ``SEEK_SLACK_MS``) by record timestamp.
    3. Outcomes are read from the same point to their end: an outcome comes after its
       decision, so none that counts is older. Only those naming a decision read in
       step 2 are kept.
    """
    names = TopicNames(settings.topic_prefix)
    start = None if attribution.since_ms is None else attribution.since_ms - SEEK_SLACK_MS
    for topic in (names.decision_log, names.source("outcome")):
        count = await partition_count(settings, topic)
        tps = [TopicPartition(topic, p) for p in range(count)]
        report = None if progress is None else _labelled(progress, topic)
        async with snapshot_consumer(settings) as consumer:
            ranges = await bounds(consumer, tps, start)
            async for batch in read_ranges(consumer, ranges, progress=report):
                for rec in batch:
                    if topic == names.decision_log:
                        _take_decision(attribution, rec.value)
                    else:
                        _take_outcome(attribution, rec, settings)


def _labelled(progress: Callable[[str, int], None], topic: str) -> Callable[[int], None]:
    return lambda n: progress(topic, n)


def _take_decision(attribution: Attribution, value: bytes | None) -> None:
    d = decode_decision(value)
    if d is None:
        attribution.tally.unreadable_decisions += 1
    else:
        attribution.add_decision(d)


def _take_outcome(attribution: Attribution, rec: Any, settings: Settings) -> None:
    attribution.tally.outcomes += 1
    ev = parse_event(
        "outcome",
        rec.value,
        rec.key,
        rec.headers,
        now_ms=attribution.now_ms,
        max_bytes=settings.max_event_bytes,
        # A time far ahead is the channel service's clock, not a reason to drop a reward.
        max_future_ms=sys.maxsize,
    )
    if isinstance(ev, Rejection):
        attribution.tally.unreadable_outcomes += 1
    else:
        attribution.add_outcome(ev)
