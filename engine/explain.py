"""``segue explain``: one customer's recent decisions from the decision log, readable.

The decision log is keyed by customer id with Kafka's default (murmur2) partitioner, so
one customer's decisions all sit on one partition: only that one is read, from the end
backwards in growing windows, until enough decisions are found or the lookback (a
record timestamp) is reached. A busy log is never scanned whole for one customer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import TopicPartition

from engine.logread import (
    bounds,
    decode_decision,
    partition_count,
    read_ranges,
    snapshot_consumer,
)
from engine.records import expected_partition
from engine.settings import Settings
from topics.catalogue import TopicNames
from topics.decisions import Decision

FIRST_WINDOW = 2_000
"""Offsets the first backwards window spans; each next one doubles. A customer with a
few recent decisions is found in the first window of all but the busiest partitions."""


@dataclass(frozen=True, slots=True)
class Found:
    """A customer's decisions, newest first, and what the read came across."""

    decisions: tuple[Decision, ...]
    partition: int
    scanned: int
    """Records read on the customer's partition."""
    unreadable: int
    """Records under the customer's key that are no decision (not JSON, fields missing)."""


async def customer_decisions(
    settings: Settings,
    customer_id: str,
    *,
    since_ms: int,
    limit: int,
    progress: Callable[[int], None] | None = None,
) -> Found:
    """The newest ``limit`` decisions for ``customer_id`` decided at or after ``since_ms``.

    1. Find the log's partition count; hash the customer id to its partition.
    2. Take that partition's end now (the snapshot) and the first offset at ``since_ms``.
    3. Read windows ``[lo, hi)`` backwards from the end, each twice as wide as the one
       before, until ``limit`` decisions are in hand or the window reaches that offset.
    """
    if limit < 1:
        raise ValueError("--limit must be at least 1")
    topic = TopicNames(settings.topic_prefix).decision_log
    key = customer_id.encode()
    partition = expected_partition(key, await partition_count(settings, topic))
    tp = TopicPartition(topic, partition)
    found: list[tuple[int, Decision]] = []
    scanned = unreadable = 0
    async with snapshot_consumer(settings) as consumer:
        floor, hi = (await bounds(consumer, [tp], since_ms))[tp]
        width = FIRST_WINDOW
        while hi > floor and len(found) < limit:
            lo = max(floor, hi - width)
            async for batch in read_ranges(consumer, {tp: (lo, hi)}):
                scanned += len(batch)
                for rec in batch:
                    if rec.key != key:
                        continue
                    d = decode_decision(rec.value)
                    if d is None:
                        unreadable += 1
                    elif d.decided_at_ms >= since_ms:
                        found.append((rec.offset, d))
            if progress is not None:
                progress(scanned)
            hi, width = lo, width * 2
    found.sort(key=lambda item: item[0], reverse=True)  # offset order is write order
    newest = tuple(d for _, d in found[:limit])
    return Found(newest, partition, scanned, unreadable)


def format_decisions(decisions: Sequence[Decision]) -> str:
    """Every decision as a block of lines, in the order given, a blank line between."""
    return "\n\n".join(format_decision(d) for d in decisions)


def format_decision(d: Decision) -> str:
    """One decision for a person reading it: what happened, and why.

    >>> from topics.decisions import Candidate
    >>> d = Decision("d-1", "c-1", "e-1", "web", "search", 1795507200000,
    ...     "discount_offer", "sms", "marketing", 0.41, False,
    ...     ("eligible 2 of 3", "highest priority"), "logistic-heads/12",
    ...     (Candidate("discount_offer", "sms", True, None, 0.41, 0.41),
    ...      Candidate("discount_offer", "email", False, "no_consent"),
    ...      Candidate("product_recommendation", "push", True, None, 0.2, 0.2)),
    ...     decided_at_ms=1795507200250, catalogue_version="default@3", stage="active",
    ...     propensity=0.95)
    >>> print(format_decision(d))
    2026-11-24T08:00:00.250Z  web.search (event e-1, 2026-11-24T08:00:00.000Z)
      decision d-1: discount_offer by sms (marketing), next best action
      greedy, propensity 0.950; holdout no
      model logistic-heads/12; catalogue default@3; stage active
      candidates:
        discount_offer:sms           score 0.410  priority 0.410  <- chosen
        product_recommendation:push  score 0.200  priority 0.200
        discount_offer:email         excluded: no_consent
      reasons: eligible 2 of 3; highest priority
    """
    what = (
        f"{d.action} by {d.channel} ({d.action_class or 'unclassified'})"
        if d.acts
        else "stayed quiet"
    )
    how = f"journey {d.journey}" if d.journey else "next best action"
    propensity = "unknown" if d.propensity is None else f"{d.propensity:.3f}"
    draw = "explored" if d.explored else "greedy"
    versions = [
        f"model {d.model_version}",
        f"catalogue {d.catalogue_version or '-'}",
        f"stage {d.stage or '-'}",
    ]
    lines = [
        f"{_iso(d.decided_at_ms)}  {d.event_source}.{d.event_type} "
        f"(event {d.event_id}, {_iso(d.event_time_ms)})",
        f"  decision {d.decision_id}: {what}, {how}",
        f"  {draw}, propensity {propensity}; holdout {'yes' if d.holdout else 'no'}",
        "  " + "; ".join(versions),
    ]
    if d.candidates:
        lines.append("  candidates:")
        # Eligible ones by priority, the best first, then the excluded, as logged.
        ranked = sorted(
            d.candidates, key=lambda c: (not c.eligible, -(c.priority or 0.0) if c.eligible else 0)
        )
        width = max(len(f"{c.action}:{c.channel}") for c in d.candidates) + 2
        for c in ranked:
            arm = f"{c.action}:{c.channel}".ljust(width)
            if not c.eligible:
                lines.append(f"    {arm}excluded: {c.excluded_by or 'unknown rule'}")
                continue
            taken = d.acts and (c.action, c.channel) == (d.action, d.channel)
            chosen = "  <- chosen" if taken else ""
            lines.append(f"    {arm}score {_num(c.score)}  priority {_num(c.priority)}{chosen}")
    else:
        lines.append("  candidates: not recorded (a decision re-sent after a restart)")
    lines.append("  reasons: " + ("; ".join(d.reasons) if d.reasons else "-"))
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
