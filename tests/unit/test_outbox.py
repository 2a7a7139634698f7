"""The outbox hands records to the producer a batch per topic-partition, in the order they
were added, and stops the process when output cannot be delivered (engine/outbox.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import RecordMetadata
from faust.types import TP

from engine import outbox as outbox_module
from engine.app import build_app
from engine.changelog import ChangelogTable
from engine.outbox import EXIT_OUTPUT_FAILED, MAX_PENDING, Outbox
from engine.records import Send, expected_partition
from engine.settings import Settings

PARTITIONS = 3


class FakeMetadata:
    def __init__(self) -> None:
        self.known: set[str] = set()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(PARTITIONS)) if topic in self.known else None


class FakeClient:
    def __init__(self, metadata: FakeMetadata) -> None:
        self.metadata = metadata
        self.metadata_waits: list[str] = []

    async def _wait_on_metadata(self, topic: str) -> None:
        self.metadata_waits.append(topic)
        await asyncio.sleep(0)
        self.metadata.known.add(topic)


class FakeProducer:
    """aiokafka's producer as the outbox uses it: real batch builders, murmur2 partitions,
    and a future per batch that the test resolves."""

    def __init__(self, batch_size: int = 16384, refuse: bool = False) -> None:
        self._metadata = FakeMetadata()
        self.client = FakeClient(self._metadata)
        self.batch_size = batch_size
        self.refuse = refuse
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def _partition(
        self, topic: str, partition: None, k: None, v: None, key: bytes, value: bytes
    ) -> int:
        return expected_partition(key, PARTITIONS)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        if self.refuse:
            raise RuntimeError("producer closed")
        await asyncio.sleep(0)  # another agent may run meanwhile
        records = DefaultRecordBatch(bytes(batch._build()))
        self.sent.append((topic, partition, [(r.key, r.value) for r in records]))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def sends(topic: str, keys: list[str], tag: str) -> list[Send]:
    return [
        Send(topic, k.encode(), f"{tag}-{i}".encode(), [("h", b"1")]) for i, k in enumerate(keys)
    ]


def test_records_reach_each_partition_in_the_order_they_were_added() -> None:
    keys = [f"c-{n % 7}" for n in range(40)]

    async def run() -> FakeProducer:
        producer = FakeProducer()
        box = Outbox(lambda: producer, exit=pytest.fail)
        box.add(sends("log", keys, "a"))
        box.add(sends("email", keys[:5], "b"))
        await box.flush()
        assert len(box) == 0
        box.add(sends("log", keys[:1], "c"))
        await box.flush()  # metadata known now: not fetched again
        return producer

    producer = asyncio.run(run())
    assert sorted(producer.client.metadata_waits) == ["email", "log"]
    for topic, n in (("log", 40), ("email", 5)):
        expected: dict[int, list[tuple[bytes, bytes]]] = {}
        tag = "a" if topic == "log" else "b"
        for i, k in enumerate(keys[:n]):
            expected.setdefault(expected_partition(k.encode(), PARTITIONS), []).append(
                (k.encode(), f"{tag}-{i}".encode())
            )
        got = {p: recs for t, p, recs in producer.sent[:-1] if t == topic}
        assert got == expected


def test_a_partition_whose_records_outgrow_a_batch_gets_several_in_order() -> None:
    async def run() -> FakeProducer:
        producer = FakeProducer(batch_size=300)
        box = Outbox(lambda: producer, exit=pytest.fail)
        box.add(sends("log", ["same"] * 30, "x"))
        await box.flush()
        return producer

    producer = asyncio.run(run())
    assert len(producer.sent) > 1
    values = [v for _, _, recs in producer.sent for _, v in recs]
    assert values == [f"x-{i}".encode() for i in range(30)]


def test_concurrent_flushes_keep_the_order_of_adding() -> None:
    """Two agents flushing at once: the second waits for the first, so its later record
    for the same customer cannot overtake."""

    async def run() -> FakeProducer:
        producer = FakeProducer()
        box = Outbox(lambda: producer, exit=pytest.fail)
        box.add(sends("log", ["c-1"], "first"))
        first = asyncio.create_task(box.flush())
        await asyncio.sleep(0)  # the first flush is inside send_batch now
        box.add(sends("log", ["c-1"], "second"))
        await asyncio.gather(first, box.flush())
        return producer

    producer = asyncio.run(run())
    assert [recs for _, _, recs in producer.sent] == [
        [(b"c-1", b"first-0")],
        [(b"c-1", b"second-0")],
    ]


def test_a_background_flush_takes_what_arrives_meanwhile_and_a_commit_waits_for_it() -> None:
    """An agent starts a flush and reads on; records it adds meanwhile go with that flush,
    in order, and the flush Faust awaits before a commit returns only once all are in the
    producer's hands."""

    async def run() -> tuple[FakeProducer, list[str]]:
        producer = FakeProducer()
        box = Outbox(lambda: producer, exit=pytest.fail)
        box.add(sends("log", ["c-1"], "first"))
        box.flush_soon()
        await asyncio.sleep(0)  # the flush is inside send_batch now
        box.add(sends("log", ["c-1"], "second"))
        box.flush_soon()  # one is under way: it takes this too
        seen = []
        before_commit = asyncio.create_task(box.flush())
        while not before_commit.done():
            seen.append(f"{len(producer.sent)} sent")
            await asyncio.sleep(0)
        assert len(box) == 0
        return producer, seen

    producer, seen = asyncio.run(run())
    assert [recs for _, _, recs in producer.sent] == [
        [(b"c-1", b"first-0")],
        [(b"c-1", b"second-0")],
    ]
    assert seen[0] == "0 sent"  # the commit's flush waited for the background one


def test_full_once_max_pending_records_wait() -> None:
    box = Outbox(lambda: None, exit=pytest.fail)
    box.add(sends("log", ["c"] * (MAX_PENDING - 1), "a"))
    assert not box.full()
    box.add(sends("log", ["c"], "b"))
    assert box.full()


def test_an_undelivered_batch_exits_and_a_cancelled_one_does_not() -> None:
    exits: list[int] = []

    async def run() -> None:
        producer = FakeProducer()
        box = Outbox(lambda: producer, exit=exits.append)
        box.add(sends("log", ["c-1", "c-2", "c-3", "c-4"], "a"))
        await box.flush()
        assert len(producer.futures) >= 2
        producer.futures[0].cancel()  # the producer stopping
        producer.futures[1].set_exception(RuntimeError("not leader, retries exhausted"))
        await asyncio.sleep(0)

    asyncio.run(run())
    assert exits == [EXIT_OUTPUT_FAILED]


def test_a_producer_that_refuses_the_batch_exits() -> None:
    exits: list[int] = []

    async def run() -> None:
        box = Outbox(lambda: FakeProducer(refuse=True), exit=exits.append)
        box.add(sends("log", ["c-1"], "a"))
        await box.flush()

    asyncio.run(run())
    assert exits == [EXIT_OUTPUT_FAILED]


def test_the_worker_producer_flushes_the_outbox_before_it_flushes(tmp_path: Path) -> None:
    """Faust flushes the producer before each commit: the outbox must go first."""
    calls: list[str] = []

    async def run() -> None:
        app = build_app(replace(Settings.from_env({}), data_dir=tmp_path))
        hooks = list(app.before_flush)  # type: ignore[attr-defined]
        assert len(hooks) == 1 and getattr(hooks[0], "__self__", None).__class__ is Outbox

        async def hook() -> None:
            calls.append("outbox")

        app.before_flush[:] = [hook]  # type: ignore[attr-defined]
        await app.producer.flush()  # not started: only the hook and Faust's empty buffer

    asyncio.run(run())
    assert calls == ["outbox"]
    assert outbox_module.EXIT_OUTPUT_FAILED == 70


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_table_writes_reach_the_partition_at_once_and_the_changelog_with_the_output(
    tmp_path: Path, store: str
) -> None:
    settings = replace(Settings.from_env({}), data_dir=tmp_path, table_store=store)
    table: Any = build_app(settings).tables["profiles"]
    topic = table.changelog_topic.get_topic_name()

    async def run() -> FakeProducer:
        producer = FakeProducer()
        box = Outbox(lambda: producer, exit=pytest.fail)
        rows = ChangelogTable(table, box)
        rows.set(b"c-1", b"v1", 2)
        rows.set(b"c-2", b"v2", 2)
        rows.delete(b"c-1", 2)
        rows.delete(b"absent", 2)  # nothing to delete: no tombstone
        # Before any flush: the next record of the partition reads it.
        assert (rows.get(b"c-1", 2), rows.get(b"c-2", 2)) == (None, b"v2")
        if store == "rocksdb://":  # one store per partition: not in another partition's
            assert rows.get(b"c-2", 1) is None
            # Staged until the slice is done, then one batch into the partition's database.
            db = table.data._db_for_partition(2)
            db[b"c-1"] = b"v0"
            assert (db.get(b"c-1"), db.get(b"c-2")) == (b"v0", None)
            rows.write_staged()
            assert (db.get(b"c-1"), db.get(b"c-2")) == (None, b"v2")
            assert (rows.get(b"c-1", 2), rows.get(b"c-2", 2)) == (None, b"v2")
        await box.flush()
        # The broker acknowledges the batch at base offset 40: three records, 40-42.
        producer.futures[0].set_result(RecordMetadata(topic, 2, None, 40, 0, 0, 0))
        await asyncio.sleep(0)
        return producer

    producer = asyncio.run(run())
    # The partition given (that of the record being processed), not the key's.
    assert producer.sent == [(topic, 2, [(b"c-1", b"v1"), (b"c-2", b"v2"), (b"c-1", None)])]
    # Where recovery resumes reading the changelog (a memory store reads all of it).
    persisted = table.data.persisted_offset(TP(topic, 2))
    assert persisted == (42 if store == "rocksdb://" else None)
