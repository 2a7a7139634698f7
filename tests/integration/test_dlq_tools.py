"""Scenario: an operator lists the dead-letter topic and re-drives some of it.

We expect the listing to read a snapshot of the topic (it ends while records keep
arriving) with filters applied, and a re-drive to put each record back on its source
topic as it first arrived, on its key's partition, with where it came from; anything
that did not come from an input topic is skipped with the reason, and a dry run sends
nothing.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

import engine.localkafka as localkafka
from engine.admin import AdminError, create_topics
from engine.deadletters import (
    REDRIVEN_FROM,
    UNKNOWN,
    DeadLetter,
    Filter,
    read_dead_letters,
    redrive,
)
from engine.records import expected_partition
from engine.settings import Settings
from topics.catalogue import DLQ_MAX_MESSAGE_BYTES, TopicNames
from topics.deadletter import dead_letter_headers

pytestmark = pytest.mark.integration

BASE = time.time_ns() // 1_000_000 - 3_600_000  # an hour ago
BIG = b'{"pad": "' + b"y" * 1_500_000 + b'"}'  # over aiokafka's 1 MiB default fetch size


@dataclass(frozen=True)
class Rejected:
    """One record as the worker would have dead-lettered it."""

    source: str  # topic name after the prefix
    error_class: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    at: int


REJECTED = [
    Rejected("web", "malformed_json", b"c-1", b'{"event_id": ', (("trace", b"t1"),), BASE),
    Rejected(
        "web", "schema_invalid", b"c-2", b'{"type": 5}', (("a", b"1"), ("a", b"2")), BASE + 1000
    ),
    Rejected("purchase", "tombstone", b"c-3", None, (), BASE + 2000),
    Rejected("web", "bad_encoding", b"c-4", b"\xff\xfe\x00", (("trace", b"\xff"),), BASE + 3000),
    Rejected("decisions.log", "internal_error", b"c-5", b"{}", (), BASE + 4000),
    Rejected("support", "too_large", b"c-6", BIG, (), BASE + 5000),
]
HAND_WRITTEN = (b"c-7", b"put here by hand")  # no reason headers at all


def home(key: bytes | None, settings: Settings) -> int:
    """The partition the default partitioner gives ``key``; None keys are not used here."""
    assert key is not None
    return expected_partition(key, settings.partitions)


def elsewhere(key: bytes | None, settings: Settings, step: int) -> int:
    """A partition other than the key's own, so a test can tell which one a send chose."""
    return (home(key, settings) + step) % settings.partitions


@pytest.fixture
async def dlq(kafka: localkafka.ClusterInfo) -> AsyncIterator[Settings]:
    """A fresh topic catalogue with the dead letters above on its DLQ topic."""
    settings = replace(
        Settings.from_env({}),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"dlq{uuid.uuid4().hex[:6]}.",
    )
    await create_topics(settings, report=lambda line: None)
    names = TopicNames(settings.topic_prefix)
    async with producing(settings) as p:
        for i, r in enumerate(REJECTED):
            headers = dead_letter_headers(
                r.headers,
                error_class=r.error_class,
                message=f"reason {i}",
                topic=names.source(r.source),
                partition=elsewhere(r.key, settings, 2),
                offset=100 + i,
                rejected_at_ms=r.at,
            )
            # Off the key's own partition, so a re-drive that reused it would be caught.
            where = elsewhere(r.key, settings, 1)
            await p.send_and_wait(names.dlq, r.value, r.key, headers=headers, partition=where)
        await p.send_and_wait(names.dlq, HAND_WRITTEN[1], HAND_WRITTEN[0])
    yield settings


@asynccontextmanager
async def producing(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=DLQ_MAX_MESSAGE_BYTES
    )
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` now, read without a group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=DLQ_MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)  # a fresh topic: nothing deleted yet
        seen: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 10
        while len(seen) < sum(ends.values()) and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                seen.extend(recs)
        return seen
    finally:
        await consumer.stop()


async def test_lists_every_dead_letter_oldest_first(dlq: Settings) -> None:
    names = TopicNames(dlq.topic_prefix)
    seen: list[int] = []
    letters = await read_dead_letters(dlq, Filter(), progress=seen.append)
    assert seen and seen[-1] == len(REJECTED) + 1
    assert [d.error_class for d in letters] == [r.error_class for r in REJECTED] + [UNKNOWN]
    for d, (i, r) in zip(letters, enumerate(REJECTED), strict=False):
        assert (d.key, d.value, d.rejected_at_ms) == (r.key, r.value, r.at)
        assert d.original_headers() == list(r.headers)
        assert (d.source_topic, d.source_offset, d.message) == (
            names.source(r.source),
            100 + i,
            f"reason {i}",
        )
        assert (d.partition, d.source_partition) == (
            elsewhere(r.key, dlq, 1),
            elsewhere(r.key, dlq, 2),
        )
    unknown = letters[-1]
    assert (unknown.key, unknown.value, unknown.source_topic) == (*HAND_WRITTEN, "")


async def test_filters_and_limit_choose_which(dlq: Settings) -> None:
    names = TopicNames(dlq.topic_prefix)

    async def classes(flt: Filter, limit: int | None = None) -> list[str]:
        return [d.error_class for d in await read_dead_letters(dlq, flt, limit=limit)]

    two = frozenset({"tombstone", "malformed_json"})
    assert await classes(Filter(reasons=two)) == ["malformed_json", "tombstone"]
    window = Filter(since_ms=BASE + 1000, until_ms=BASE + 3000)
    assert await classes(window) == ["schema_invalid", "tombstone"]
    web = Filter(source_topic=names.source("web"))
    assert await classes(web) == ["malformed_json", "schema_invalid", "bad_encoding"]
    assert await classes(web, limit=2) == ["malformed_json", "schema_invalid"]
    assert await classes(Filter(reasons=frozenset({"no_such_reason"}))) == []


async def test_a_read_ends_at_the_snapshot_while_letters_keep_arriving(dlq: Settings) -> None:
    names = TopicNames(dlq.topic_prefix)
    stop = asyncio.Event()

    async def keep_rejecting() -> None:
        async with producing(dlq) as p:
            while not stop.is_set():
                await p.send_and_wait(names.dlq, b"late", b"c-late")

    writer = asyncio.create_task(keep_rejecting())
    try:
        await asyncio.sleep(0.2)  # some arrive before the read starts
        letters = await asyncio.wait_for(read_dead_letters(dlq, Filter()), timeout=10)
    finally:
        stop.set()
        await writer
    assert len(letters) > len(REJECTED) + 1  # the snapshot took some of them, and ended


async def test_redrive_puts_records_back_as_they_arrived(dlq: Settings) -> None:
    names = TopicNames(dlq.topic_prefix)
    letters = await read_dead_letters(dlq, Filter())
    chosen = [d for d in letters if d.error_class != "schema_invalid"]

    dry = await redrive(dlq, chosen, dry_run=True)
    assert dry.sent == 0
    assert [await read_topic(dlq, t) for t in names.inputs] == [[]] * len(names.inputs)

    report = await redrive(dlq, chosen)
    assert report.sent == 4
    assert (
        dict(report.by_topic)
        == dict(dry.by_topic)
        == {names.source("web"): 2, names.source("purchase"): 1, names.source("support"): 1}
    )
    assert sorted((s.letter.error_class, s.reason) for s in report.skipped) == [
        (
            "internal_error",
            f"{names.decision_log} is not an input topic of prefix {names.prefix!r}",
        ),
        (UNKNOWN, "no segue.source.topic header"),
    ]

    by_key: dict[bytes | None, DeadLetter] = {d.key: d for d in chosen}
    for topic, count in report.by_topic.items():
        back = await read_topic(dlq, topic)
        assert len(back) == count
        for rec in back:
            d = by_key[rec.key]
            assert rec.value == d.value
            origin = f"{names.dlq}/{d.partition}/{d.offset}".encode()
            assert list(rec.headers) == [*d.original_headers(), (REDRIVEN_FROM, origin)]
            assert rec.partition == home(rec.key, dlq) != d.partition


async def test_missing_topics_are_reported_and_a_missing_broker_is_one_line(
    kafka: localkafka.ClusterInfo,
) -> None:
    prefix = f"dlq{uuid.uuid4().hex[:6]}."  # no topics created
    fresh = replace(Settings.from_env({}), kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix)
    with pytest.raises(AdminError, match=f"^{re.escape(prefix)}dlq does not exist"):
        await read_dead_letters(fresh, Filter())
    rec = SimpleNamespace(
        partition=0,
        offset=0,
        key=b"k",
        value=b"v",
        timestamp=BASE,
        headers=[("segue.source.topic", f"{prefix}web".encode())],
    )
    report = await redrive(fresh, [DeadLetter.parse(rec)])
    assert report.sent == 0
    assert [s.reason for s in report.skipped] == [f"{prefix}web does not exist"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        gone = replace(fresh, kafka_bootstrap=closed)
        with pytest.raises(AdminError, match=f"^cannot reach Kafka at {closed}: ") as err:
            await read_dead_letters(gone, Filter())
        assert "\n" not in str(err.value)
