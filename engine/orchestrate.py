"""Where journeys meet the customer: run the journey engine for one event or one timer
tick over the profile, and turn the acts it commands into decisions.

Pure like the rest of the core. The journey memory lives inside the profile, so one
table write stores both, and the time a journey sees is event time (or, for a tick, the
timer's own wake time): replaying the same input gives the same steps and act ids.

An act becomes a decision on the first of its channels the customer has not opted out
of; consent binds every class, transactional included. With no such channel the
decision is "no action", logged with the reason. Its id derives from the act id, so a
replayed act keeps its id and channel services can drop the duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine import journey_runtime as runtime
from engine.journeys import Catalogue, Journey, stage_of
from engine.pending import TIMER_SOURCE, TIMER_TYPE
from engine.profile import Profile, view
from topics.decisions import NO_ACTION, Candidate, Decision, decision_id
from topics.events import Event

JOURNEY_MODEL = "journey"
"""``model_version`` of journey decisions: a catalogue step chose them, not the model."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the journeys did for one event or tick."""

    profile: Profile
    decisions: list[Decision]
    """One per act of ``commands``, in order."""
    commands: list[runtime.Command]

    @property
    def acts(self) -> list[runtime.Act]:
        return [c for c in self.commands if isinstance(c, runtime.Act)]

    @property
    def acted(self) -> bool:
        return any(d.acts for d in self.decisions)


def catalogue_version(cat: Catalogue) -> str:
    return f"{cat.name}@{cat.version}"


def event_doc(ev: Event) -> dict[str, Any]:
    """The ``event`` a journey condition reads: the payload plus ``name`` (its type as
    ``source.type``, what entries, exits and waits name) and its time."""
    return {**ev.data, "name": f"{ev.source}.{ev.type}", "time_ms": ev.time_ms}


def on_event(cat: Catalogue, p: Profile, ev: Event, *, decided_at_ms: int) -> Outcome:
    if runtime.quiet(cat, p.journeys, f"{ev.source}.{ev.type}"):
        return Outcome(p, [], [])
    mem, commands = runtime.on_event(
        cat, p.journeys, event_doc(ev), view(p, ev.time_ms), now_ms=ev.time_ms
    )
    trigger = (ev.event_id, ev.source, ev.type)
    return _outcome(cat, p, mem, commands, trigger, decided_at_ms)


def on_tick(cat: Catalogue, p: Profile, *, now_ms: int, decided_at_ms: int) -> Outcome:
    """Fire the timers due at ``now_ms`` (each at its own wake time)."""
    mem, commands = runtime.on_time(cat, p.journeys, view(p, now_ms), now_ms=now_ms)
    return _outcome(cat, p, mem, commands, None, decided_at_ms)


def stage(cat: Catalogue, p: Profile, now_ms: int) -> str | None:
    """The customer's lifecycle stage by the catalogue's rules (first match wins)."""
    return stage_of(cat, view(p, now_ms), now_ms) if cat.lifecycle else None


def _outcome(
    cat: Catalogue,
    p: Profile,
    mem: runtime.JourneyMemory,
    commands: list[runtime.Command],
    trigger: tuple[str, str, str] | None,
    decided_at_ms: int,
) -> Outcome:
    acts = [c for c in commands if isinstance(c, runtime.Act)]
    now_ms = acts[0].at_ms if acts else 0
    where = stage(cat, p, now_ms) if acts else None
    decisions = [
        act_decision(p, c, cat.journey(c.journey_id), cat, trigger, decided_at_ms, where)
        for c in acts
    ]
    after = p if mem is p.journeys or mem == p.journeys else replace(p, journeys=mem)
    return Outcome(after, decisions, commands)


def act_decision(
    p: Profile,
    act: runtime.Act,
    journey: Journey,
    cat: Catalogue,
    trigger: tuple[str, str, str] | None,
    decided_at_ms: int,
    stage: str | None = None,
) -> Decision:
    """The decision carrying out ``act``; ``trigger`` is (event id, source, type), or
    None when a timer fired it; ``stage`` is the customer's lifecycle stage."""
    candidates = tuple(
        Candidate(
            action=act.action,
            channel=c,
            eligible=c not in p.opted_out,
            excluded_by="no_consent" if c in p.opted_out else None,
        )
        for c in act.channels
    )
    channel = next((c.channel for c in candidates if c.eligible), None)
    reasons = [f"journey {journey.id} reached step {act.step_id}"]
    if channel is None:
        reasons.append(f"no consented channel among {', '.join(act.channels)}")
    elif channel != act.channels[0]:
        reasons.append(f"first channel with consent: {channel}")
    event_id, source, etype = trigger or (act.act_id, TIMER_SOURCE, TIMER_TYPE)
    return Decision(
        decision_id=decision_id(p.customer_id, "journey", act.act_id, act.step_id),
        customer_id=p.customer_id,
        event_id=event_id,
        event_source=source,
        event_type=etype,
        event_time_ms=act.at_ms,
        action=act.action if channel else NO_ACTION,
        channel=channel,
        action_class=journey.journey_class if channel else None,
        score=None,
        explored=False,
        reasons=tuple(reasons),
        model_version=JOURNEY_MODEL,
        candidates=candidates,
        decided_at_ms=decided_at_ms,
        journey=journey.id,
        catalogue_version=catalogue_version(cat),
        stage=stage,
        propensity=1.0,  # the catalogue's step, not a draw
    )
