"""Reading a topic as a snapshot, for operator tools: no consumer group, nothing committed.

The tools that explain and evaluate decisions read the decision log and the outcome
topic while workers keep writing to them. Each read is bounded by offsets taken before
it starts (an end per partition), so it ends, and it uses no group, so the workers'
group never rebalances because of it (as ``engine.deadletters`` reads the DLQ).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.admin import AdminError, admin_client, connection_kwargs, start_client
from engine.settings import Settings
from topics.decisions import Candidate, Decision

Range = tuple[int, int]
"""Offsets ``[lo, hi)`` of one partition."""

STALL_POLLS = 30
"""Empty one-second polls in a row before a read that makes no progress gives up: a
broker lost mid-read would otherwise leave the tool polling forever."""


async def partition_count(settings: Settings, topic: str) -> int:
    """Partitions of ``topic``; AdminError when the cluster does not have it."""
    admin = admin_client(settings)
    await start_client(admin, settings)
    try:
        # All topics, none named: a metadata request naming a topic asks the broker to
        # auto-create it, which a cluster may allow.
        found = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()
    if topic not in found:
        raise AdminError(f"{topic} does not exist; run `segue topics create` first")
    return found[topic]


@asynccontextmanager
async def snapshot_consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group that never commits."""
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        # Retention may delete the oldest records during the read: go on from what is
        # left rather than jump to the end (aiokafka's default) and end the read early.
        auto_offset_reset="earliest",
        **connection_kwargs(settings),
    )
    await start_client(consumer, settings)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def bounds(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None
) -> dict[TopicPartition, Range]:
    """Per partition, the first offset whose record timestamp is at or after ``since_ms``
    (the beginning when None) and the end now: the snapshot to read."""
    consumer.assign(tps)
    ends: dict[Any, int] = await consumer.end_offsets(tps)
    starts: dict[Any, int] = await consumer.beginning_offsets(tps)
    if since_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, max(since_ms, 0)))
        # None: no record that recent, so nothing to read there.
        starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
    return {tp: (starts[tp], ends[tp]) for tp in tps}


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, Range],
    *,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[list[Any]]:
    """Batches of the records in ``ranges`` (the partitions must be assigned), in offset
    order per partition. ``progress`` gets the records read so far after each batch."""
    for tp, (lo, _) in ranges.items():
        consumer.seek(tp, lo)
    remaining = {tp for tp, (lo, hi) in ranges.items() if lo < hi}
    others = set(consumer.assignment()) - remaining
    if others:
        consumer.pause(*others)
    consumer.resume(*remaining)
    read = idle = 0
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        # A record outside the range can come from a fetch sent before the seek.
        out = [
            r for tp, rs in batches.items() for r in rs if ranges[tp][0] <= r.offset < ranges[tp][1]
        ]
        done = {tp for tp in remaining if await consumer.position(tp) >= ranges[tp][1]}
        consumer.pause(*done)  # stop prefetching what workers add after the snapshot
        remaining -= done
        idle = 0 if batches or done else idle + 1
        if idle >= STALL_POLLS:
            topic = next(iter(remaining)).topic
            raise AdminError(f"reading {topic} stalled after {read} records; is Kafka up?")
        read += len(out)
        if out:
            if progress is not None:
                progress(read)
            yield out


def decode_decision(value: bytes | None) -> Decision | None:
    """A decision-log record's value as a Decision; None when it is not one.

    Fields this version does not know (written by a newer worker) are left out rather
    than making the record unreadable.

    >>> d = decode_decision(b'{"decision_id": "d-1", "customer_id": "c", "event_id": "e",'
    ...     b' "event_source": "web", "event_type": "search", "event_time_ms": 0,'
    ...     b' "action": "none", "channel": null, "action_class": null, "score": null,'
    ...     b' "explored": false, "reasons": [], "model_version": "m/0",'
    ...     b' "candidates": [{"action": "a", "channel": "sms", "eligible": true, "new": 1}],'
    ...     b' "newer_field": 1}')
    >>> d.decision_id, d.candidates[0].channel, decode_decision(b"[]")
    ('d-1', 'sms', None)
    """
    try:
        doc = orjson.loads(value or b"")
        cands = [_known(c, _CANDIDATE_FIELDS) for c in doc.get("candidates") or ()]
        return Decision.from_dict({**_known(doc, _DECISION_FIELDS), "candidates": cands})
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None


_DECISION_FIELDS = frozenset(f.name for f in fields(Decision))
_CANDIDATE_FIELDS = frozenset(f.name for f in fields(Candidate))


def _known(doc: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in names}
