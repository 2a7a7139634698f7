"""A decision awaiting its outcome, as the customer's profile keeps it.

Two readers need it after the decision has gone out:

1. The learner, when the outcome arrives: the arm chosen and the features it was scored
   on (``lesson``).
2. A replay after a crash (``engine.pipeline``, status "replayed"): the event was applied
   but its decision may never have reached Kafka, so it is sent again (``resend``).

The profile holds up to ``engine.profile.MAX_PENDING`` of these and must stay under
2 KiB, so each keeps only what those readers need, stored as a list of its fields: about
160 bytes where the decision record as published took about 1.6 KB. Left out, and why
that is safe:

- the decision id: derived from the customer and the triggering event
  (``topics.decisions.decision_id``), so a replay recomputes it; a 48-bit hash of it
  (``key``) is enough to match an outcome among the few pending decisions;
- the event's id, source, type and time: the replayed event carries them;
- the feature names: ``x`` lists the values in ``models.features.NAMES`` order, and
  ``layout`` tells which NAMES that was;
- for a journey's decision, ``act`` (the act id: journey, entry, step and times) and
  ``trigger`` (a hash of the event or timer nudge that took it) replace the features:
  its id derives from the act id, and a replay of the same trigger finds it by hash;
- the candidates, reasons and propensity (the explanation, most of the record): a re-sent decision
  has the same id, customer, event, action, channel, class, score, exploration flag,
  model version, features and decision time, which is what a channel service acts on
  and dedupes by; its reasons say it was re-sent, and its candidates are empty. The
  explanation is in the decision log's first copy whenever that copy was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from operator import attrgetter, itemgetter
from typing import Any

from engine.dedup import short_hash
from engine.frozen import immutable
from models.features import LAYOUT, NAMES
from topics.decisions import Decision, decision_id
from topics.events import Event

RESENT = "re-sent after a restart: the candidates and reasons were not kept"
TIMER_SOURCE = "timer"
"""``event_source`` of a decision a journey timer took (engine/orchestrate.py uses it)."""
TIMER_TYPE = "journey.wake"


@immutable
class Pending:
    """Stored as a list of its fields in this order (``to_list``), without their names.

    ``immutable`` (``engine.frozen``), not a frozen dataclass: one is built for every
    decision that acts (``of``) and for each one a decoded profile holds (``load``), and
    a frozen one sets its eleven fields with an ``object.__setattr__`` call each. With
    ``of``'s positional arguments and ``itemgetter`` below: ``of`` 5,600 instructions
    where it took 18,200, ``Profile.decode`` 36,800 where 43,400 (callgrind, the decide
    workload's profiles)."""

    key: str
    """``short_hash`` of the decision id."""
    arm: str
    """``action:channel``."""
    x: tuple[float, ...]
    """The feature values scored, in the order of ``models.features.NAMES`` at ``layout``."""
    score: float | None
    explored: bool
    model: str
    at_ms: int
    """When it was decided (the decision's ``decided_at_ms``)."""
    layout: int = LAYOUT
    act: str = ""
    """A journey decision's act id; empty for next-best-action."""
    trigger: str = ""
    """A journey decision's ``short_hash`` of what triggered it: event id or nudge id."""
    answer: int = 0
    """How it was answered so far (``engine.attribution``: OPEN, or a positive or
    negative outcome, or a purchase); it teaches when it leaves the memory."""

    @classmethod
    def of_act(cls, d: Decision, act_id: str, trigger_id: str) -> Pending:
        assert d.channel is not None, "only a decision that acts awaits an outcome"
        return cls(
            key=short_hash(d.decision_id),
            arm=f"{d.action}:{d.channel}",
            x=(),
            score=None,
            explored=False,
            model=d.model_version,
            at_ms=d.decided_at_ms,
            act=act_id,
            trigger=short_hash(trigger_id),
        )

    @classmethod
    def of(cls, d: Decision) -> Pending:
        assert d.channel is not None, "only a decision that acts awaits an outcome"
        # Positional, and the features taken by one C ``itemgetter`` call rather than a
        # generator over NAMES.
        return cls(
            short_hash(d.decision_id),
            f"{d.action}:{d.channel}",
            _features_of(d.features),
            d.score,
            d.explored,
            d.model_version,
            d.decided_at_ms,
        )

    def to_list(self) -> list[Any]:
        """The fields in order; those after ``layout`` only up to the last one that is
        not at its default (a model decision has no act, an open one no answer)."""
        if not (self.act or self.trigger or self.answer):
            # The common case (an open model decision) without the loop: 5,500
            # instructions per decision encoded where the loop took 8,800 (callgrind).
            return list(_head_of(self))
        stored = list(_fields_of(self))
        while len(stored) > _ALWAYS and stored[-1] == _DEFAULTS[len(stored) - 1]:
            stored.pop()
        return stored

    @classmethod
    def load(cls, stored: list[Any] | dict[str, Any]) -> Pending:
        """Read a pending decision as ``to_list`` wrote it, as a dict (orjson's own form of
        the dataclass), or in the form written before this one: a dict with the decision's
        id and its whole record."""
        if isinstance(stored, list):
            return cls(stored[0], stored[1], tuple(stored[2]), *stored[3:])
        if "record" not in stored:
            return cls(**{**stored, "x": tuple(stored["x"])})
        record = stored["record"]
        old = record.get("features", {})
        fits = all(name in old for name in NAMES)
        return cls(
            key=short_hash(stored["decision_id"]),
            arm=f"{record['action']}:{record['channel']}",
            x=tuple(old[name] for name in NAMES) if fits else (),
            score=record.get("score"),
            explored=bool(record.get("explored")),
            model=str(record.get("model_version", "")),
            at_ms=int(record.get("decided_at_ms", 0)),
        )


_NAMES = tuple(f.name for f in fields(Pending))
_ALWAYS = _NAMES.index("layout") + 1
_DEFAULTS = [f.default for f in fields(Pending)]
_fields_of = attrgetter(*_NAMES)
"""Every field in order, in one call: ``dataclasses.fields`` per call was a third of
what encoding a profile cost."""
_head_of = attrgetter(*_NAMES[:_ALWAYS])
"""The fields through ``layout``: all that an open model decision stores."""
_features_of = itemgetter(*NAMES)
"""A decision's feature values in NAMES order, as a tuple (NAMES has several names)."""


def lesson(p: Pending) -> tuple[dict[str, float], str] | None:
    """The features and arm to learn from, or None when they were stored under other
    feature names (before a deploy that changed them)."""
    if p.layout != LAYOUT or len(p.x) != len(NAMES):
        return None
    return dict(zip(NAMES, p.x, strict=True)), p.arm


def resend(
    p: Pending, decision_id: str, customer_id: str, ev: Event, classes: Mapping[str, str]
) -> Decision:
    """The decision as it is sent again when ``ev`` is replayed (see the module docstring);
    ``classes`` maps action ids to their class."""
    action, channel = p.arm.split(":", 1)
    learned = lesson(p)
    return Decision(
        decision_id=decision_id,
        customer_id=customer_id,
        event_id=ev.event_id,
        event_source=ev.source,
        event_type=ev.type,
        event_time_ms=ev.time_ms,
        action=action,
        channel=channel,
        action_class=classes.get(action),
        score=p.score,
        explored=p.explored,
        reasons=(RESENT,),
        model_version=p.model,
        features=learned[0] if learned else {},
        decided_at_ms=p.at_ms,
    )


def resend_act(
    p: Pending,
    customer_id: str,
    trigger: tuple[str, str, str] | None,
    classes: Mapping[str, str],
) -> Decision:
    """A journey's decision as it is sent again when its trigger is replayed: ``trigger``
    is the replayed event's (id, source, type), None for a timer nudge; ``classes`` maps
    action ids to their class."""
    journey, _, step, _, since = p.act.split(":")
    action, channel = p.arm.split(":", 1)
    event_id, source, etype = trigger or (p.act, TIMER_SOURCE, TIMER_TYPE)
    return Decision(
        decision_id=decision_id(customer_id, "journey", p.act, step),
        customer_id=customer_id,
        event_id=event_id,
        event_source=source,
        event_type=etype,
        event_time_ms=int(since),
        action=action,
        channel=channel,
        action_class=classes.get(action),
        score=None,
        explored=False,
        reasons=(RESENT,),
        model_version=p.model,
        decided_at_ms=p.at_ms,
        journey=journey,
    )
