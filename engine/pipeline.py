"""One input record in, its effects out: the functional core the worker's agent runs.

``process`` touches no Kafka and no clock. It returns what to write — the customer's
new profile and the records to send — and the agent carries that out. Its steps:

1. Parse and validate the raw bytes; a rejection becomes one dead-letter record.
2. If the profile already holds this source offset, the event was applied before a
   crash: nothing is applied twice, and the decision it produced (still remembered
   with the profile) is sent again under the same id, since it may not have left.
3. Apply the event to the profile.
4. An outcome with a terminal result teaches the policy from the feature snapshot
   remembered with its decision.
5. A decision-point event is decided; the decision goes to the decision log, and to its
   channel topic when it acts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson
from aiokafka.partitioner import murmur2

from engine.actions import TRIGGERS
from engine.decide import DecideConfig, decide
from engine.profile import Pending, Profile, apply_event, remember, take_pending
from models.policy import Policy
from topics.catalogue import TopicNames
from topics.deadletter import dead_letter_headers
from topics.decisions import Decision
from topics.events import Event, Rejection, parse_event

REWARDS: dict[str, float] = {
    "converted": 1.0,
    "dismissed": 0.0,
    "bounced": 0.0,
    "unsubscribed": 0.0,
    "complained": 0.0,
}
"""Outcomes that close a decision, and the reward each teaches. Others keep it open."""

Headers = list[tuple[str, bytes]]
ProfileLoader = Callable[[str], Profile]
"""Looks up a customer's current profile (a new, empty one for a customer never seen)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A raw record as read from an input topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 1_048_576
    max_future_ms: int = 300_000
    partitions: int = 0
    """Partition count of the input topics; 0 skips the key-to-partition check."""


@dataclass(slots=True)
class Result:
    """What one record did. ``profile`` is set when the customer's state changed."""

    status: str
    """One of: rejected, replayed, applied, decided, learned."""
    event: Event | None = None
    profile: Profile | None = None
    sends: list[Send] = field(default_factory=list)
    rejection: Rejection | None = None
    decision: Decision | None = None
    reward: float | None = None


def process(
    rec: Record,
    load: ProfileLoader,
    policy: Policy,
    names: TopicNames,
    cfg: DecideConfig,
    limits: Limits,
    *,
    now_ms: int,
) -> Result:
    source = names.source_of(rec.topic)
    parsed: Event | Rejection
    if source is None:
        parsed = Rejection("unknown_source", f"topic {rec.topic!r} is not an input topic")
    else:
        parsed = parse_event(
            source,
            rec.value,
            rec.key,
            now_ms=now_ms,
            max_bytes=limits.max_event_bytes,
            max_future_ms=limits.max_future_ms,
        )
    if isinstance(parsed, Rejection):
        return reject(rec, parsed, names, now_ms=now_ms)

    ev = parsed
    if limits.partitions and rec.key is not None:
        home = expected_partition(rec.key, limits.partitions)
        if home != rec.partition:
            why = Rejection(
                "misrouted_key",
                f"key hashes to partition {home} but the record is on {rec.partition}: "
                "produce with Kafka's default murmur2 partitioner so each customer's "
                "events share one partition",
            )
            return reject(rec, why, names, now_ms=now_ms)
    before = load(ev.customer_id)
    if before.applied(rec.topic, rec.partition, rec.offset):
        sends = [
            s
            for item in before.pending
            if item.event_id == ev.event_id
            for s in _decision_sends(
                Decision.from_dict(item.record), names, orjson.dumps(item.record)
            )
        ]
        return Result("replayed", event=ev, sends=sends)

    profile = apply_event(before, ev, topic=rec.topic, partition=rec.partition, offset=rec.offset)
    result = Result("applied", event=ev, profile=profile)

    if ev.source == "outcome" and ev.type in REWARDS:
        profile, pending = take_pending(profile, str(ev.data["decision_id"]))
        if pending is not None:
            result.reward = REWARDS[ev.type]
            taken = pending.record
            arm = f"{taken['action']}:{taken['channel']}"
            policy.learn_one(taken["features"], arm, result.reward)
            result.status = "learned"
        result.profile = profile
    elif f"{ev.source}.{ev.type}" in TRIGGERS:
        decision = decide(profile, ev, policy, cfg, now_ms=now_ms)
        encoded = decision.encode()
        if decision.acts:
            assert decision.channel is not None
            profile = remember(
                profile,
                Pending(decision.decision_id, ev.event_id, orjson.loads(encoded)),
            )
        result = replace(result, status="decided", profile=profile, decision=decision)
        result.sends = _decision_sends(decision, names, encoded)
    return result


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


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def _decision_sends(decision: Decision, names: TopicNames, value: bytes) -> list[Send]:
    key = decision.customer_id.encode()
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", decision.decision_id.encode()),
        ("ce_type", b"segue.decision"),
        ("ce_source", b"segue"),
        ("ce_time", _rfc3339(decision.decided_at_ms)),
        ("content-type", b"application/json"),
    ]
    sends = [Send(names.decision_log, key, value, headers)]
    if decision.acts:
        assert decision.channel is not None
        sends.append(Send(names.decisions(decision.channel), key, value, headers))
    return sends


def _rfc3339(ms: int) -> bytes:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").encode()
