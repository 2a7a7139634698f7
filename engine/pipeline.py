"""One record in, its effects out: the functional core the worker runs.

The core touches no Kafka and no clock. Each entry point returns a :class:`Result` —
profile and identity writes, records to send — and the worker's handler carries it out
(engine/handler.py). Three
entry points, one per topic the worker reads:

``ingest`` (the input topics):
  1. Parse and validate; a rejection becomes one dead-letter record.
  2. An anonymous web event whose visitor is already linked to a customer is forwarded
     to the stitched topic, keyed by that customer; one not yet linked updates the
     anonymous profile on this partition.
  3. A login or signup that names both ids is forwarded to the identity topic, keyed by
     the anonymous id, where that visitor's history lives.
  4. Anything else is applied to the customer's profile here (see ``_apply``).

``link`` (the identity topic, keyed by anonymous id): record the link, take the
anonymous profile, and forward both the event and that history to the stitched topic.

``stitched`` (keyed by customer id): merge the history, then ``_apply`` the event.

``tick`` (the timer topic, keyed by customer id): a nudge from the worker's clock fires
the customer's journey timers due at the nudge's time (engine/orchestrate.py), each at
its own wake time; a nudge that finds nothing due changes nothing.

``_apply``:
  1. A source offset the profile already holds was applied before a crash: nothing is
     applied twice, and the decision it produced is sent again under the same id
     (without its candidates and reasons: ``engine.pending`` says what is kept).
  2. An event whose (source, id) the profile saw within the dedup window is a duplicate:
     counted, not applied, not dead-lettered.
  3. Apply the event; the decisions it settles (an outcome, a purchase, a window that
     passed: engine/attribution.py) teach the policy from the features stored with them.
  4. A known customer's journeys see the event (exits first, then waits, then entries);
     each act becomes a decision on its channel topic and the log.
  5. A decision point is decided by next-best-action (engine/decide.py), logged and, if
     it acts, sent to its channel topic. Journeys and next-best-action pass the same
     contact policy over the same profile, journeys first, each contact recorded before
     the next is checked: one message per moment, and no cap broken between them.
     Every decision that acts is held open (engine/pending.py; one pushed out of the
     memory teaches what it earned by then: engine/attribution.py).
  6. If the customer's next journey timer moved, the result says so: the shell keeps
     the timers table and its due-time index (engine/timers.py).

Per-customer order holds within a partition: everything about a customer is applied on
the customer's partition, forwarded events behind the history they follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import orjson

from engine import attribution, orchestrate
from engine.actions import TRIGGERS
from engine.decide import DECIDE_READS, HOLDOUT, STEP, DecideConfig, decide, in_holdout
from engine.dedup import short_hash
from engine.journey_runtime import RUNTIME_READS, quiet
from engine.journeys import Catalogue, profile_fields
from engine.pending import Pending, resend, resend_act
from engine.profile import ANONYMOUS, Profile, changed
from engine.profile_updates import (
    SUPPRESSING_OUTCOMES,
    apply_event,
    find_pending,
    merge,
    record_contact,
    record_outcome,
    remembered,
    seen_before,
)
from engine.profile_view import Reading, reading_of, view
from engine.records import (
    Record,
    Send,
    decision_sends,
    decode_forward,
    encode_forward,
    expected_partition,
)
from engine.result import Result, applied, reject
from models.policy import Policy
from topics.catalogue import INPUT_SOURCES, TopicNames
from topics.decisions import Decision, decision_id
from topics.events import Event, Rejection, parse_event

__all__ = ["Core", "Limits", "State"]

LINKING = frozenset({"login", "signup"})
"""Web events that, carrying both ids, tie an anonymous visitor to a customer."""


class State(Protocol):
    """Read access to the worker's tables for the partition being processed, and the
    journey catalogue in force."""

    def profile(self, key: str) -> Profile | None: ...

    def linked(self, anonymous_id: str) -> str | None: ...

    @property
    def catalogue(self) -> Catalogue: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 1_048_576
    max_future_ms: int = 300_000
    partitions: int = 0
    """Partition count of the input topics; 0 skips the key-to-partition check."""
    dedup_window_ms: int = 86_400_000
    dedup_max_ids: int = 32
    attribution_window_ms: int = 3 * attribution.DAY_MS


@dataclass(frozen=True, slots=True)
class Core:
    policy: Policy
    names: TopicNames
    identity_topic: str
    stitched_topic: str
    timer_topic: str
    cfg: DecideConfig = field(default_factory=DecideConfig)
    limits: Limits = field(default_factory=Limits)
    _sources: dict[str, str] = field(init=False, repr=False, compare=False)
    """Input topic -> its source: ``names.source_of`` as one dict look-up."""
    _groups: dict[str, bool] = field(init=False, repr=False, compare=False)
    """Customer id -> in the holdout group (``_holdout``)."""
    _judges: dict[str, Callable[[Pending], bool]] = field(init=False, repr=False, compare=False)
    """Catalogue digest -> its ``marketing`` function (``_marketing``)."""
    _readings: dict[str, Reading] = field(init=False, repr=False, compare=False)
    """Catalogue digest -> the parts of the profile's view it reads (``_reading``)."""

    def __post_init__(self) -> None:
        _set(self, "_sources", {self.names.source(s): s for s in INPUT_SOURCES})
        _set(self, "_groups", {})
        _set(self, "_judges", {})
        _set(self, "_readings", {})

    def _holdout(self, customer_id: str) -> bool:
        """``in_holdout(customer_id, self.cfg)``, remembered: it hashes the salted id
        (blake2b) on every event of a known customer, and the same customers keep coming
        back. This and ``_sources`` took 4,900 instructions off each decision point
        (callgrind, 649,900 -> 645,000 in a counted run of 1,000 after 3,000). Bounded
        like ``expected_partition``'s cache: emptied when full, so a stream of new ids
        cannot grow the memory."""
        groups = self._groups
        held = groups.get(customer_id)
        if held is None:
            if len(groups) >= _MAX_GROUPS:
                groups.clear()
            held = groups[customer_id] = in_holdout(customer_id, self.cfg)
        return held

    def _marketing(self, cat: Catalogue) -> Callable[[Pending], bool]:
        """Whether a held decision is marketing, by ``cat``: the function made once per
        catalogue (by its digest, which covers its content) rather than a closure per
        event. With ``journey_runtime.on_event`` without its inner call, ``_validate``
        without a ``str()`` and the holdout group read inline in ``_apply`` (since put
        back behind ``_holdout``'s call): about 450 instructions per decision point
        (callgrind with address randomisation off, 619,300 -> 618,900; a small saving,
        within what runs with it on differ by)."""
        made = self._judges.get(cat.digest)
        if made is None:
            if len(self._judges) >= _MAX_JUDGES:
                self._judges.clear()
            actions = cat.actions
            made = self._judges[cat.digest] = lambda item: attribution.is_marketing(
                item, actions, cat
            )
        return made

    def _reading(self, cat: Catalogue) -> Reading:
        """The parts of the profile's view that the journeys and next-best-action read
        under ``cat``: its conditions' fields, and what the runtime and ``decide`` read
        themselves. Worked out once per catalogue (by its digest). The default
        catalogue's conditions read six fields, whose parts cost 4.5-5.7 µs where the
        whole view took 8.4-10.4 (timed over the decide workload's 4,971 profiles), no
        contact counts and no decayed counters: 11,000 instructions per decision point
        less (callgrind, ``core_throughput --workload decide``, 11,341 M -> 11,297 M
        over 4,000 events)."""
        made = self._readings.get(cat.digest)
        if made is None:
            if len(self._readings) >= _MAX_JUDGES:
                self._readings.clear()
            fields = profile_fields(cat)
            if fields is not None:
                fields |= RUNTIME_READS | DECIDE_READS
            made = self._readings[cat.digest] = reading_of(fields)
        return made

    def ingest(self, rec: Record, state: State, *, now_ms: int) -> Result:
        source = self._sources.get(rec.topic)
        if source is None:
            why = Rejection("unknown_source", f"topic {rec.topic!r} is not an input topic")
            return reject(rec, why, self.names, now_ms=now_ms)
        parsed = parse_event(
            source,
            rec.value,
            rec.key,
            rec.headers,
            now_ms=now_ms,
            max_bytes=self.limits.max_event_bytes,
            max_future_ms=self.limits.max_future_ms,
        )
        if isinstance(parsed, Rejection):
            return reject(rec, parsed, self.names, now_ms=now_ms)
        ev = parsed
        if self.limits.partitions and rec.key is not None:
            home = expected_partition(rec.key, self.limits.partitions)
            if home != rec.partition:
                why = Rejection(
                    "misrouted_key",
                    f"key hashes to partition {home} but the record is on {rec.partition}: "
                    "produce with Kafka's default murmur2 partitioner so each customer's "
                    "events share one partition",
                )
                return reject(rec, why, self.names, now_ms=now_ms)

        if ev.customer_id is None:
            assert ev.anonymous_id is not None
            customer = state.linked(ev.anonymous_id)
            if customer is not None:
                return self._forward(ev, self.stitched_topic, customer, merge=None)
            return self._apply(ev, ANONYMOUS + ev.anonymous_id, rec, state, now_ms=now_ms)
        if ev.anonymous_id is not None and ev.type in LINKING:
            return self._forward(ev, self.identity_topic, ev.anonymous_id, merge=None)
        return self._apply(ev, ev.customer_id, rec, state, now_ms=now_ms)

    def link(self, rec: Record, state: State, *, now_ms: int) -> Result:
        fwd = decode_forward(rec)
        if isinstance(fwd, Rejection):
            return reject(rec, fwd, self.names, now_ms=now_ms)
        ev, _ = fwd
        assert ev.anonymous_id is not None and ev.customer_id is not None
        anon_key = ANONYMOUS + ev.anonymous_id
        history = state.profile(anon_key)
        result = self._forward(ev, self.stitched_topic, ev.customer_id, merge=history)
        result.links[ev.anonymous_id] = ev.customer_id
        if history is not None:
            result.writes[anon_key] = None
        return result

    def stitched(self, rec: Record, state: State, *, now_ms: int) -> Result:
        fwd = decode_forward(rec)
        if isinstance(fwd, Rejection):
            return reject(rec, fwd, self.names, now_ms=now_ms)
        ev, history = fwd
        assert ev.customer_id is not None
        return self._apply(ev, ev.customer_id, rec, state, now_ms=now_ms, history=history)

    def tick(self, rec: Record, state: State, *, now_ms: int) -> Result:
        """A timer nudge from the worker's clock: fire the customer's journey timers due
        at the nudge's time. Nudges are hints: a stale or repeated one changes nothing,
        so the clock may send one more than once."""
        try:
            doc = orjson.loads(rec.value or b"")
            key, due_ms = str(doc["customer_id"]), int(doc["now_ms"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            why = Rejection("internal_error", f"unreadable timer record: {exc!r}")
            return reject(rec, why, self.names, now_ms=now_ms)
        before = state.profile(key)
        if before is None:
            return Result("stale")  # erased since the timer was set
        tick_id = f"tick:{rec.partition}:{rec.offset}"
        if before.applied(rec.topic, rec.partition, rec.offset):
            return Result("replayed", sends=self._resend(before, key, tick_id, None, state))
        settled = attribution.expire(before, due_ms, window_ms=self.limits.attribution_window_ms)
        done = orchestrate.on_tick(
            state.catalogue,
            settled.profile,
            now_ms=due_ms,
            decided_at_ms=now_ms,
            holdout=self._holdout(key),
        )
        if not done.commands and done.profile is before:
            return Result("stale")
        result = Result("timer" if done.commands else "stale", commands=done.commands)
        self._learn(result, settled.leaving)
        profile = self._journey_sends(result, done, tick_id)
        profile = changed(
            profile, offsets={**before.offsets, f"{rec.topic}/{rec.partition}": rec.offset}
        )
        result.writes[key] = profile
        self._note_timer(result, key, before, profile)
        return result

    def _forward(self, ev: Event, topic: str, key: str, *, merge: Profile | None) -> Result:
        value = encode_forward(ev, key, merge)
        return Result("forwarded", event=ev, sends=[Send(topic, key.encode(), value)])

    def _apply(
        self,
        ev: Event,
        key: str,
        rec: Record,
        state: State,
        *,
        now_ms: int,
        history: Profile | None = None,
    ) -> Result:
        stored = state.profile(key)
        before = stored or Profile(key)
        if before.applied(rec.topic, rec.partition, rec.offset):
            sends = self._resend(before, key, ev.event_id, ev, state)
            return Result("replayed", event=ev, sends=sends)
        if ev.source == "consent" and ev.type == "erasure_requested":
            # Forget the person: the table write is a tombstone, which compaction of the
            # changelog removes for good. Later events start a new, empty profile.
            result = Result("erased", event=ev, writes={key: None})
            if stored is not None and orchestrate.next_wake(stored) is not None:
                result.timers[key] = None
            return result
        dedup_key = ev.dedup_key  # a property (an f-string): read once, used twice
        if seen_before(before, dedup_key):
            # Checked before merging: a replayed login must not fold its history in twice.
            return Result("duplicate", event=ev)
        if history is not None:
            before = merge(before, history)

        seen = remembered(
            before,
            dedup_key,
            ev.time_ms,
            window_ms=self.limits.dedup_window_ms,
            max_ids=self.limits.dedup_max_ids,
        )
        profile = apply_event(
            before, ev, topic=rec.topic, partition=rec.partition, offset=rec.offset, seen=seen
        )
        result = applied(ev)
        # Asked once: the group, the journeys and next-best-action all need the answer.
        known = not profile.anonymous  # a customer, not a visitor known by a cookie
        holdout = known and self._holdout(profile.customer_id)
        if known:
            result.group = HOLDOUT if holdout else "treated"
            result.new_customer = stored is None
            result.first_order = profile.orders > before.orders == 0
        if ev.source == "outcome" and ev.type in SUPPRESSING_OUTCOMES:
            # What outcome-based suppression counts (engine/contact_policy.py): the action
            # of the decision dismissed, while the profile still holds that decision.
            item = find_pending(profile, str(ev.data["decision_id"]))
            if item is not None:
                action = item.arm.split(":", 1)[0]
                profile = record_outcome(profile, action, ev.type, ev.time_ms)
        cat = state.catalogue
        settled = attribution.settle(
            profile,
            ev,
            window_ms=self.limits.attribution_window_ms,
            marketing=self._marketing(cat),
        )
        profile, result.late_outcomes = settled.profile, settled.late
        result.revenue = settled.revenue
        if settled.leaving:
            self._learn(result, settled.leaving)
        name = f"{ev.source}.{ev.type}"  # once, for the triggers and the journeys
        point = known and name in TRIGGERS
        # The profile as conditions read it, worked out once for the journeys and
        # next-best-action both: computing it twice per decision point cost 5% of the core.
        picture = view(profile, ev.time_ms, self._reading(cat)) if point else None
        # Journeys first: their exits see this event before anything acts on it. Most
        # events move none of the customer's journeys (``quiet``), and then nothing of
        # ``on_event``'s outcome is needed (it hands back the profile, no command, no
        # decision). Asked here, with the event's name worked out once and the shortcuts
        # of ``_journey_sends`` and ``_learn`` for nothing to send or teach: 12,900
        # instructions per decision point less (callgrind, 634,200 -> 621,300). Asking
        # ``journey_runtime.quiet`` itself, whose catalogue plan look-up is inline, with
        # ``orchestrate._outcome``'s shortcut for no command, ``_note_timer`` called only
        # when the journeys moved and the ``Event`` built in ``_validate``: another 2,200
        # (621,500 -> 619,300, callgrind with address randomisation off, ``setarch -R``:
        # without it, runs of one tree differ by up to 2,500).
        if known and not quiet(cat, profile.journeys, name):
            done = orchestrate.on_event(
                cat,
                profile,
                ev,
                decided_at_ms=now_ms,
                holdout=holdout,
                profile_view=picture,
                name=name,
                quiet_checked=True,
            )
            result.commands = done.commands
            contacted = done.profile.contacts is not profile.contacts
            profile = self._journey_sends(result, done, ev.event_id)
            if point and contacted:  # a journey's contact changed what the view counts
                picture = view(profile, ev.time_ms, self._reading(cat))
        if point:
            decision = decide(
                profile,
                ev,
                self.policy,
                self.cfg,
                cat,
                now_ms=now_ms,
                holdout=holdout,
                profile_view=picture,
            )
            encoded = decision.encode()
            if decision.acts:
                assert decision.channel is not None
                profile, evicted = attribution.hold(profile, Pending.of(decision))
                self._learn(result, evicted)
                profile = record_contact(profile, decision.channel, ev.time_ms)
            result.status, result.decision = "decided", decision
            result.sends += decision_sends(decision, self.names, encoded)
        result.writes[key] = profile
        if profile.journeys is not before.journeys or profile.deferred is not before.deferred:
            self._note_timer(result, key, before, profile)  # asked here: no call for most
        return result

    def _journey_sends(self, result: Result, done: orchestrate.Outcome, trigger_id: str) -> Profile:
        """Queue the sends of journey decisions and remember the acting ones, so a replay
        of ``trigger_id`` sends them again (orchestrate recorded their contacts)."""
        profile = done.profile
        result.journey_decisions = done.decisions
        if not done.decisions:
            return profile
        for act, decision in zip(done.acts, done.decisions, strict=True):
            encoded = decision.encode()
            if decision.channel is not None:
                held = Pending.of_act(decision, act.act_id, trigger_id)
                profile, evicted = attribution.hold(profile, held)
                self._learn(result, evicted)
            result.sends += decision_sends(decision, self.names, encoded)
        return profile

    def _learn(self, result: Result, leaving: tuple[tuple[Pending, str], ...]) -> None:
        if not leaving:
            return
        lessons = attribution.teach(self.policy, leaving)
        result.lessons += lessons
        if result.status == "applied" and any(x.log_loss is not None for x in lessons):
            result.status = "learned"

    def _resend(
        self, p: Profile, key: str, trigger_id: str, ev: Event | None, state: State
    ) -> list[Send]:
        """The decisions ``trigger_id`` (an event, or a timer nudge when ``ev`` is None)
        produced, again: it was applied before a crash that may have lost its sends.
        Same ids, so channel services drop duplicates (engine/pending.py)."""
        again: list[Decision] = []
        classes = {a.action_id: a.action_class for a in state.catalogue.actions}
        if ev is not None:
            did = decision_id(key, ev.source, ev.event_id, STEP)
            item = find_pending(p, did)
            if item is not None and not item.act:
                again.append(resend(item, did, key, ev, classes))
        trigger = short_hash(trigger_id)
        event = (ev.event_id, ev.source, ev.type) if ev is not None else None
        again += [
            resend_act(item, key, event, classes)
            for item in p.pending
            if item.act and item.trigger == trigger
        ]
        # As recorded the first time, unless a new catalogue came in the crash window.
        cat = state.catalogue
        version, stage = (
            orchestrate.catalogue_version(cat),
            orchestrate.stage(cat, p, p.last_seen_ms),
        )
        again = [replace(d, catalogue_version=version, stage=stage) for d in again]
        return [s for d in again for s in decision_sends(d, self.names, d.encode())]

    @staticmethod
    def _note_timer(result: Result, key: str, before: Profile, after: Profile) -> None:
        if after.journeys is before.journeys and after.deferred is before.deferred:
            return  # most events: the journeys did not move
        wake = orchestrate.next_wake(after)
        if wake != orchestrate.next_wake(before):
            result.timers[key] = wake


_set = object.__setattr__
_MAX_GROUPS = 65_536
"""Customers whose holdout group ``Core._holdout`` remembers at most."""
_MAX_JUDGES = 8
"""Catalogues whose ``marketing`` function and view reading ``Core`` keeps: the one in
force and a few just replaced."""
