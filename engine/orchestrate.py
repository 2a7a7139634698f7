"""Where journeys meet the customer: run the journey engine for one event or one timer
tick over the profile, and turn the acts it commands into decisions.

Pure like the rest of the core. The journey memory lives inside the profile, so one
table write stores both, and the time a journey sees is event time (or, for a tick, the
timer's own wake time): replaying the same input gives the same steps and act ids.

Every act goes through the contact policy of the catalogue (``engine.contact_policy``),
in the order the journeys acted, each accepted contact recorded in the profile before
the next act is checked: two journeys acting on one event cannot both take the last
slot of a cap. An act becomes a decision on the first of its channels the policy allows
(where quiet hours move a push to in-app, on in-app). With none allowed:

- if quiet hours refused a channel, the act is *deferred*: the decision log says so,
  the profile keeps the act id with the end of the quiet hours (``Profile.deferred``),
  and the timer that wakes then tries the act again, under the same decision id, as
  long as the same membership of its journey is still active (a journey that ended in
  the meantime, say on an order, takes back its reminder);
- otherwise the decision is "no action", with each channel's reason.

A customer in the holdout group gets no marketing acts: the decision says so. The
decision's id derives from the act id, so a replayed act keeps its id and channel
services can drop the duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine import contact_check
from engine import journey_runtime as runtime
from engine.journeys import Act as ActStep
from engine.journeys import Catalogue, Journey, stage_of
from engine.pending import TIMER_SOURCE, TIMER_TYPE
from engine.profile import Profile, changed
from engine.profile_view import view
from topics.decisions import NO_ACTION, Candidate, Decision, decision_id
from topics.events import Event

DEFERRED = "deferred by quiet hours until"
"""How the reasons of a deferred act's decision begin their last line."""
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


def event_doc(ev: Event, name: str | None = None) -> dict[str, Any]:
    """The ``event`` a journey condition reads: the payload plus ``name`` (its type as
    ``source.type``, what entries, exits and waits name; given when the caller has built
    it already) and its time."""
    return {**ev.data, "name": name or f"{ev.source}.{ev.type}", "time_ms": ev.time_ms}


def on_event(
    cat: Catalogue,
    p: Profile,
    ev: Event,
    *,
    decided_at_ms: int,
    holdout: bool = False,
    profile_view: dict[str, Any] | None = None,
    name: str | None = None,
    quiet_checked: bool = False,
) -> Outcome:
    """The journeys' steps for ``ev``; ``profile_view`` is ``view(p, ev.time_ms)`` (at
    least the fields ``cat`` reads: ``journeys.profile_fields``) and ``name`` is
    ``source.type`` when the caller has them already; ``quiet_checked``: the caller
    found the event not ``quiet`` (then the journeys need not be asked again)."""
    if name is None:
        name = f"{ev.source}.{ev.type}"  # once for both uses
    if not quiet_checked and runtime.quiet(cat, p.journeys, name):
        return Outcome(p, [], [])
    seen = view(p, ev.time_ms) if profile_view is None else profile_view
    doc = event_doc(ev, name)
    mem, commands = runtime.on_event(
        cat, p.journeys, doc, seen, now_ms=ev.time_ms, quiet_checked=True
    )
    trigger = (ev.event_id, ev.source, ev.type)
    return _outcome(cat, p, mem, commands, trigger, decided_at_ms, holdout)


def on_tick(
    cat: Catalogue, p: Profile, *, now_ms: int, decided_at_ms: int, holdout: bool = False
) -> Outcome:
    """Fire the timers due at ``now_ms`` (each at its own wake time), then the deferred
    acts due by then."""
    mem, commands = runtime.on_time(cat, p.journeys, view(p, now_ms), now_ms=now_ms)
    done = _outcome(cat, p, mem, commands, None, decided_at_ms, holdout)
    return _deferred(cat, done, now_ms, decided_at_ms, holdout)


def next_wake(p: Profile) -> int | None:
    """When the customer's next journey timer or deferred act is due."""
    due = [t for t in (runtime.next_wake(p.journeys), *p.deferred.values()) if t is not None]
    return min(due, default=None)


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
    holdout: bool,
) -> Outcome:
    after = p if mem is p.journeys or mem == p.journeys else changed(p, journeys=mem)
    if not commands:
        # Most events the journeys see: no command (``Core._apply`` notes the saving).
        return Outcome(after, [], commands)
    acts = [c for c in commands if isinstance(c, runtime.Act)]
    now_ms = acts[0].at_ms if acts else 0
    where = stage(cat, p, now_ms) if acts else None
    decisions = []
    for act in acts:
        journey = cat.journey(act.journey_id)
        decision, after = act_decision(
            after, act, journey, cat, trigger, decided_at_ms, where, holdout=holdout
        )
        decisions.append(decision)
    return Outcome(after, decisions, commands)


def _deferred(
    cat: Catalogue, done: Outcome, now_ms: int, decided_at_ms: int, holdout: bool
) -> Outcome:
    """``done`` with the deferred acts due by ``now_ms`` tried again, each at its due time."""
    p = done.profile
    due = sorted((t, act_id) for act_id, t in p.deferred.items() if t <= now_ms)
    if not due:
        return done
    p = changed(p, deferred={k: t for k, t in p.deferred.items() if t > now_ms})
    decisions, commands = list(done.decisions), list(done.commands)
    for at_ms, act_id in due:
        act = _resumed(cat, p, act_id, at_ms)
        if act is None:
            continue  # its journey membership ended while it waited
        journey = cat.journey(act.journey_id)
        where = stage(cat, p, at_ms)
        decision, p = act_decision(
            p, act, journey, cat, None, decided_at_ms, where, holdout=holdout
        )
        decisions.append(decision)
        commands.append(act)
    return Outcome(p, decisions, commands)


def _resumed(cat: Catalogue, p: Profile, act_id: str, at_ms: int) -> runtime.Act | None:
    """The deferred act ``act_id``, due at ``at_ms``, if its membership is still active."""
    journey_id, entry, step_id, _, _ = act_id.split(":")
    member = p.journeys.active.get(journey_id)
    if member is None or str(member.entry) != entry:
        return None
    try:
        step = cat.journey(journey_id).step(step_id)
    except KeyError:  # withdrawn by a new catalogue
        return None
    if not isinstance(step, ActStep):
        return None
    return runtime.Act(journey_id, step_id, step.action, step.channels, act_id, at_ms)


def act_decision(
    p: Profile,
    act: runtime.Act,
    journey: Journey,
    cat: Catalogue,
    trigger: tuple[str, str, str] | None,
    decided_at_ms: int,
    stage: str | None = None,
    *,
    holdout: bool = False,
) -> tuple[Decision, Profile]:
    """The decision carrying out ``act``, and the profile after it (the contact it made
    recorded, or the act deferred); ``trigger`` is (event id, source, type), or None when
    a timer fired it; ``stage`` is the customer's lifecycle stage."""
    spec = cat.action(act.action)
    klass = spec.action_class if spec is not None else journey.journey_class
    reasons = [f"journey {journey.id} reached step {act.step_id}"]
    if holdout and klass == "marketing":
        reasons.append("holdout group: no marketing actions")
        verdicts = []
        refused: list[tuple[str, str | None]] = [(c, "holdout") for c in act.channels]
    else:
        verdicts = [
            contact_check.check(cat.contact, p, act.action, klass, c, now_ms=act.at_ms)
            for c in act.channels
        ]
        refused = [(v.channel, v.reason) for v in verdicts]
    candidates = tuple(
        Candidate(action=act.action, channel=c, eligible=why is None, excluded_by=why)
        for c, why in refused
    )
    chosen = next((v for v in verdicts if v.allowed), None)
    if chosen is not None:
        p = contact_check.accept(p, chosen)
        if chosen.channel != act.channels[0]:
            reasons.append(f"first channel the contact policy allows: {chosen.channel}")
    else:
        defer = [v.defer_until_ms for v in verdicts if v.defer_until_ms is not None]
        if defer:
            until = min(defer)
            p = changed(p, deferred={**p.deferred, act.act_id: until})
            reasons.append(f"{DEFERRED} {_iso(until)}")
        elif verdicts:
            why = ", ".join(f"{v.channel}: {v.reason}" for v in verdicts)
            reasons.append(f"no channel the contact policy allows ({why})")
    event_id, source, etype = trigger or (act.act_id, TIMER_SOURCE, TIMER_TYPE)
    decision = Decision(
        decision_id=decision_id(p.customer_id, "journey", act.act_id, act.step_id),
        customer_id=p.customer_id,
        event_id=event_id,
        event_source=source,
        event_type=etype,
        event_time_ms=act.at_ms,
        action=act.action if chosen else NO_ACTION,
        channel=chosen.channel if chosen else None,
        action_class=klass if chosen else None,
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
        holdout=holdout,
    )
    return decision, p


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
