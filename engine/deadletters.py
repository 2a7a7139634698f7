"""Operator tools for the dead-letter topic: list what was rejected, and re-drive it.

A re-driven record goes back to its source topic as it first arrived (key, value and
headers) plus ``segue.redriven.from``; the default murmur2 partitioner puts it back on its
customer's partition. If it is rejected again the worker keeps that header, so the new
dead letter shows its history, one header per round.
"""

from __future__ import annotations

import asyncio
import heapq
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

import topics.deadletter as dl
from engine.admin import AdminError, admin_client, connection_kwargs, start_client
from engine.settings import Settings
from topics.catalogue import DLQ_MAX_MESSAGE_BYTES, TopicNames

REDRIVEN_FROM = dl.REDRIVEN_FROM
"""Header of a re-driven record: the ``<dlq topic>/<partition>/<offset>`` it came from."""
UNKNOWN = "unknown"
"""Error class of a record on the DLQ topic that has no reason headers."""

_SOURCE = (dl.SOURCE_TOPIC, dl.SOURCE_PARTITION, dl.SOURCE_OFFSET)
_REASON_HEADERS = frozenset((dl.ERROR_CLASS, dl.ERROR_MESSAGE, dl.REJECTED_AT, *_SOURCE))
# Empty one-second polls in a row before a read that makes no progress gives up: a broker
# lost mid-read would otherwise leave `segue dlq inspect` polling forever.
_STALL_POLLS = 30
_KEY_CHARS, _REASON_CHARS, _MESSAGE_CHARS, _VALUE_CHARS = 24, 24, 60, 120


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    """Where it sits on the DLQ topic."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    """All headers as stored: the original ones, then the reason headers."""
    error_class: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at_ms: int

    @classmethod
    def parse(cls, rec: Any) -> DeadLetter:
        """A dead letter from a DLQ record (an aiokafka ConsumerRecord, or alike).

        A record without reason headers (written by hand, or by another tool) is
        ``unknown``, from no source (-1), rejected at its record timestamp: listed like
        the others, never re-driven.
        """
        why = dl.reason_of(rec.headers)
        topic, partition, offset = (why.get(name, "") for name in _SOURCE)
        return cls(
            *(int(rec.partition), int(rec.offset), rec.key, rec.value, tuple(rec.headers)),
            error_class=why.get(dl.ERROR_CLASS) or UNKNOWN,
            message=why.get(dl.ERROR_MESSAGE, ""),
            source_topic=topic,
            source_partition=_int(partition, -1),
            source_offset=_int(offset, -1),
            rejected_at_ms=_int(why.get(dl.REJECTED_AT, ""), int(rec.timestamp)),
        )

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the record arrived with: all but the reason headers."""
        return [(k, v) for k, v in self.headers if k not in _REASON_HEADERS]


@dataclass(frozen=True, slots=True)
class Filter:
    """Which letters to take. Empty ``reasons`` takes any; the time window is half-open
    (``since_ms <= rejected_at_ms < until_ms``) so adjacent windows never overlap."""

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    source_topic: str | None = None

    def matches(self, d: DeadLetter) -> bool:
        return (
            (not self.reasons or d.error_class in self.reasons)
            and (self.since_ms is None or d.rejected_at_ms >= self.since_ms)
            and (self.until_ms is None or d.rejected_at_ms < self.until_ms)
            and (self.source_topic is None or d.source_topic == self.source_topic)
        )


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms from RFC 3339, epoch milliseconds, or an age (``15m``, ``2h``, ``7d``) ago.

    >>> parse_time("2026-11-24T08:00:00Z", now_ms=0)
    1795507200000
    >>> parse_time("2h", now_ms=1795507200000)
    1795500000000
    """
    text = text.strip()
    if text.isascii() and text.isdigit():
        # Epoch seconds are the likely mistake; read as milliseconds they mean early 1970.
        if int(text) < 10**11:
            raise ValueError(f"{text!r} looks like epoch seconds; give epoch milliseconds")
        return int(text)
    if age := re.fullmatch(r"(\d+)([smhd])", text, re.ASCII):
        unit_ms = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[age[2]]
        return now_ms - int(age[1]) * unit_ms
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give RFC 3339 (2026-11-24T08:00:00Z), "
            "epoch milliseconds, or an age like 15m, 2h, 7d"
        ) from None
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +hh:mm")
    return int(at.timestamp() * 1000)


async def read_dead_letters(
    settings: Settings,
    flt: Filter,
    *,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[DeadLetter]:
    """The dead letters ``flt`` matches, oldest rejection first; at most ``limit``, the oldest.

    1. Assign every DLQ partition to a consumer without a group: nothing is committed and
       the worker's group never rebalances because of us.
    2. Take each partition's end offset now: the snapshot the read stops at, so it ends
       even while the worker keeps dead-lettering.
    3. Read each partition from its beginning until its position (which also steps over
       offsets that hold no record, like transaction markers) reaches that end.

    ``limit`` keeps the oldest matches of the whole snapshot, not the first ones read, so
    inspecting and then re-driving with one limit names the same letters. ``progress``
    gets the number of records read so far, after each batch.
    """
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    dlq = TopicNames(settings.topic_prefix).dlq
    partitions = (await _partition_counts(settings)).get(dlq)
    if partitions is None:
        raise AdminError(f"{dlq} does not exist; run `segue topics create` first")
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        # Retention may delete the oldest records during the read: carry on from what is
        # left rather than jump to the end (aiokafka's default) and end the read early.
        auto_offset_reset="earliest",
        # Current brokers send a first record larger than this anyway; aiokafka skips one
        # that a broker cuts off at this size (RecordTooLargeError): let any DLQ record fit.
        max_partition_fetch_bytes=DLQ_MAX_MESSAGE_BYTES,
        **connection_kwargs(settings),
    )
    await start_client(consumer, settings)
    try:
        tps = [TopicPartition(dlq, p) for p in range(partitions)]
        consumer.assign(tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        starts: dict[Any, int] = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        # A heap on negated order keys: the newest kept is the one a later match evicts.
        kept: list[tuple[tuple[int, int, int], DeadLetter]] = []
        scanned = idle = 0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for rec in (r for tp, rs in batches.items() for r in rs if r.offset < ends[tp]):
                scanned += 1
                d = DeadLetter.parse(rec)
                if flt.matches(d):
                    entry = ((-d.rejected_at_ms, -d.partition, -d.offset), d)
                    if limit is None or len(kept) < limit:
                        heapq.heappush(kept, entry)
                    else:
                        heapq.heappushpop(kept, entry)
            done = {tp for tp in remaining if await consumer.position(tp) >= ends[tp]}
            consumer.pause(*done)  # stop prefetching what the worker adds after the snapshot
            remaining -= done
            idle = 0 if batches or done else idle + 1
            if idle >= _STALL_POLLS:
                raise AdminError(f"reading {dlq} stalled after {scanned} records; is Kafka up?")
            if progress is not None and batches:
                progress(scanned)
        return [d for _, d in sorted(kept, reverse=True)]
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    reason: str


@dataclass(frozen=True, slots=True)
class RedriveReport:
    dry_run: bool
    by_topic: Mapping[str, int]
    """Letters re-driven per source topic; on a dry run, those that would be."""
    skipped: tuple[Skipped, ...]

    @property
    def count(self) -> int:
        """Letters re-driven; on a dry run, those that would be."""
        return sum(self.by_topic.values())

    @property
    def sent(self) -> int:
        return 0 if self.dry_run else self.count

    def describe(self) -> str:
        verb = "would re-drive" if self.dry_run else "re-drove"
        lines = [f"{verb} {self.count} dead letter(s)"]
        lines += [f"  to {t}: {n}" for t, n in sorted(self.by_topic.items())]
        why = Counter(s.reason for s in self.skipped)
        lines += [f"skipped {n}: {reason}" for reason, n in sorted(why.items())]
        if self.dry_run:
            lines.append("dry run: nothing sent")
        return "\n".join(lines)


async def redrive(
    settings: Settings, letters: Sequence[DeadLetter], *, dry_run: bool = False
) -> RedriveReport:
    """Publish each letter back to its source topic, in the order given.

    Only input topics of the configured prefix take a letter; any other is skipped with
    the reason, as is one whose topic the cluster lacks. A dry run decides without
    connecting, so it cannot know the latter. A failed send raises AdminError saying how
    many were delivered.
    """
    names = TopicNames(settings.topic_prefix)
    go: list[DeadLetter] = []
    skipped: list[Skipped] = []
    for d in letters:
        if names.source_of(d.source_topic) is not None:
            go.append(d)
        elif not d.source_topic:
            skipped.append(Skipped(d, f"no {dl.SOURCE_TOPIC} header"))
        else:
            why = f"{d.source_topic} is not an input topic of prefix {names.prefix!r}"
            skipped.append(Skipped(d, why))
    if go and not dry_run:
        go = await _send(settings, names.dlq, go, skipped)
    by_topic = dict(Counter(d.source_topic for d in go))
    return RedriveReport(dry_run=dry_run, by_topic=by_topic, skipped=tuple(skipped))


async def _send(
    settings: Settings, dlq: str, letters: list[DeadLetter], skipped: list[Skipped]
) -> list[DeadLetter]:
    """Send ``letters`` and return them, less those whose topic is missing (to ``skipped``)."""
    # A cluster that auto-creates topics would make a missing input topic on the first
    # send, with its default partition count; one that does not would time the send out.
    existing = await _partition_counts(settings)
    go = [d for d in letters if d.source_topic in existing]
    missing = [d for d in letters if d.source_topic not in existing]
    skipped += [Skipped(d, f"{d.source_topic} does not exist") for d in missing]
    if not go:
        return go
    producer = AIOKafkaProducer(
        acks="all",
        enable_idempotence=True,  # a retried send must not land a letter twice
        max_request_size=DLQ_MAX_MESSAGE_BYTES,
        **connection_kwargs(settings),
    )
    await start_client(producer, settings)
    futures: list[Any] = []
    try:
        for d in go:
            origin = (REDRIVEN_FROM, f"{dlq}/{d.partition}/{d.offset}".encode())
            headers = [*d.original_headers(), origin]
            futures.append(await producer.send(d.source_topic, d.value, d.key, headers=headers))
        await producer.flush()
        results = await asyncio.gather(*futures, return_exceptions=True)
        if errors := [r for r in results if isinstance(r, BaseException)]:
            delivered = len(results) - len(errors)
            raise AdminError(f"re-drive failed, {delivered} of {len(go)} delivered: {errors[0]}")
        return go
    except KafkaError as exc:  # refused before it was queued: too large, producer fenced, ...
        raise AdminError(f"re-drive failed after {len(futures)} queued: {exc}") from None
    finally:
        await producer.stop()


async def _partition_counts(settings: Settings) -> dict[str, int]:
    """Every topic on the cluster and its partition count."""
    admin = admin_client(settings)
    await start_client(admin, settings)
    try:
        # All topics, none named: a metadata request naming a topic asks the broker to
        # auto-create it, which a cluster may allow.
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()


def format_table(letters: Sequence[DeadLetter], *, show_values: bool = False) -> str:
    """One line per letter; with ``show_values`` a preview of each value under it."""
    if not letters:
        return "no dead letters"
    head = ("REJECTED AT (UTC)", "REASON", "SOURCE", "KEY", "DLQ", "MESSAGE")
    rows = [_row(d) for d in letters]
    # The message, last, is not padded: it is the one column that may run long.
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head) - 1)]
    out = [_line(head, widths)]
    for d, row in zip(letters, rows, strict=True):
        out.append(_line(row, widths))
        if show_values:
            out.append(f"    value: {_preview(d.value)}")
    return "\n".join(out)


def _row(d: DeadLetter) -> tuple[str, ...]:
    source = f"{d.source_topic}/{d.source_partition}/{d.source_offset}" if d.source_topic else "?"
    key = "<none>" if d.key is None else _clip(d.key.decode("utf-8", "replace"), _KEY_CHARS)
    return (
        _iso(d.rejected_at_ms),
        _clip(d.error_class, _REASON_CHARS),
        source,
        key,
        f"{d.partition}/{d.offset}",
        _clip(d.message, _MESSAGE_CHARS),
    )


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = (c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
    return "  ".join([*padded, cells[-1]]).rstrip()


def summarize(letters: Sequence[DeadLetter]) -> str:
    """Counts by reason and by source topic, most frequent first."""
    if not letters:
        return "no dead letters"
    first, last = (f(d.rejected_at_ms for d in letters) for f in (min, max))
    out = [f"{len(letters)} dead letters, rejected {_iso(first)} .. {_iso(last)}"]
    for title, counts in (
        ("by reason", Counter(d.error_class for d in letters)),
        ("by source topic", Counter(d.source_topic or "?" for d in letters)),
    ):
        width = max(map(len, counts))
        out += [f"{title}:", *(f"  {k.ljust(width)}  {n}" for k, n in counts.most_common())]
    return "\n".join(out)


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a garbled header must not break a listing
        return f"{ms} ms"


def _clip(text: str, chars: int) -> str:
    """``text`` on one line, control characters escaped, cut to ``chars`` with an ellipsis."""
    # Escapes only lengthen it, so no more than its first `chars` + 1 characters can show.
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: chars + 1])
    return shown if len(shown) <= chars else shown[: chars - 1] + "…"


def _preview(value: bytes | None) -> str:
    if value is None:
        return "<tombstone>"
    # Decode only the head: a value may be megabytes. Bytes that are not UTF-8 show as \xNN.
    head = value[: _VALUE_CHARS * 4].decode("utf-8", "backslashreplace")
    return f"{_clip(head, _VALUE_CHARS)} ({len(value):,} bytes)"
