"""The worker's consumer hands the records of the receiver's topics to it directly, in
order and in slices, and commits exactly what was delivered (engine/delivery.py).

Faust's fetch is replaced by a canned batch; everything after it is the worker's own
consumer, built by ``build_app`` with no broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport import consumer as faust_consumer
from faust.types import TP

from engine import delivery
from engine.app import build_app
from engine.delivery import DELIVERY_SLICE
from engine.outbox import EXIT_OUTPUT_FAILED
from engine.settings import Settings

OURS = TP("cx.web", 1)
OURS_TOO = TP("cx.web", 2)
THEIRS = TP("segue-profiles-changelog", 1)


def record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, b"c-1", b"{}", None, 3, 2, [("h", b"v")]
    )


class Receiver:
    """Records what it is handed; ``on_slice`` runs after each slice."""

    topics = frozenset({OURS.topic})

    def __init__(self) -> None:
        self.slices: list[list[int]] = []
        self.partitions: list[int] = []
        self.flushes = 0
        self.on_slice: Any = None
        self.fail_at: int | None = None
        self.forgotten = 0
        self.holding: dict[TP, int] = {}

    def deliver(self, tp: TP, records: Sequence[Any]) -> None:
        assert tp.topic == OURS.topic
        if self.fail_at is not None and records[0].offset >= self.fail_at:
            raise OSError("store failed")
        self.slices.append([r.offset for r in records])
        self.partitions.append(tp.partition)
        if self.on_slice is not None:
            self.on_slice()

    async def delivered(self) -> None:
        self.flushes += 1

    def held(self, tp: TP) -> int | None:
        return self.holding.get(tp)

    def forget(self) -> None:
        self.forgotten += 1


@pytest.fixture
def consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = replace(Settings.from_env({}), data_dir=tmp_path, table_store="memory://")
    app = build_app(settings)
    worker_consumer: Any = app.consumer
    assert isinstance(worker_consumer, delivery.DirectConsumer)
    worker_consumer.fetched = {}

    async def fetch(self: Any, timeout: float) -> tuple[Any, Any]:
        return dict(self.fetched), None

    monkeypatch.setattr(faust_consumer.Consumer, "_wait_next_records", fetch)
    app.receiver = Receiver()  # type: ignore[attr-defined]
    return worker_consumer


def test_records_go_to_the_receiver_in_order_in_slices_and_the_rest_to_faust(
    consumer: Any,
) -> None:
    end = 100 + 2 * DELIVERY_SLICE + 4
    ours = [record(OURS, o) for o in range(100, end)]
    theirs = [record(THEIRS, o) for o in range(5)]
    consumer.fetched = {OURS: ours, THEIRS: theirs}
    rest, _ = asyncio.run(consumer._wait_next_records(1.0))
    receiver = consumer.app.receiver
    assert [o for s in receiver.slices for o in s] == list(range(100, end))
    assert [len(s) for s in receiver.slices] == [DELIVERY_SLICE, DELIVERY_SLICE, 4]
    assert receiver.flushes == 3  # one flush started per slice
    assert rest == {THEIRS: theirs}  # Faust's own path, unchanged
    # Committable: everything before the next offset; read on from there.
    assert consumer._new_offset(OURS) == end
    assert consumer._read_offset[OURS] == end
    assert OURS in set(consumer._filter_tps_with_pending_acks())


def test_partitions_of_one_fetch_share_slices_and_turns(consumer: Any) -> None:
    # A fetch of a few records in each of several partitions: one slice's worth, one
    # turn of the loop (and one outbox flush) for all of them, not one per partition.
    consumer.fetched = {
        OURS: [record(OURS, o) for o in range(3)],
        OURS_TOO: [record(OURS_TOO, o) for o in range(50, 51 + DELIVERY_SLICE)],
    }
    asyncio.run(consumer._wait_next_records(1.0))
    receiver = consumer.app.receiver
    split = 50 + DELIVERY_SLICE - 3
    assert receiver.slices == [[0, 1, 2], list(range(50, split)), list(range(split, split + 4))]
    assert receiver.partitions == [1, 2, 2]
    assert receiver.flushes == 2  # after the first full slice, and after the rest
    assert consumer._new_offset(OURS) == 3
    assert consumer._new_offset(OURS_TOO) == 51 + DELIVERY_SLICE


def test_records_before_the_read_position_are_not_delivered_twice(consumer: Any) -> None:
    consumer._read_offset[OURS] = 105  # say, a fetch that raced a seek
    consumer.fetched = {OURS: [record(OURS, o) for o in range(100, 110)]}
    asyncio.run(consumer._wait_next_records(1.0))
    assert [o for s in consumer.app.receiver.slices for o in s] == list(range(105, 110))


def test_a_rebalance_stops_delivery_between_slices(consumer: Any) -> None:
    receiver = consumer.app.receiver
    receiver.on_slice = consumer.stop_flow  # the flow stops while the first slice runs
    consumer.fetched = {OURS: [record(OURS, o) for o in range(0, 2 * DELIVERY_SLICE + 4)]}
    asyncio.run(consumer._wait_next_records(1.0))
    assert receiver.slices == [list(range(DELIVERY_SLICE))]
    # Only what was delivered is committable; the rest is fetched again after the seek.
    assert consumer._new_offset(OURS) == DELIVERY_SLICE


def test_revoked_partitions_forget_what_was_delivered(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoked: list[set[TP]] = []

    async def faust_revoke(self: Any, tps: set[TP]) -> None:
        revoked.append(tps)

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_revoked", faust_revoke)
    consumer.fetched = {OURS: [record(OURS, o) for o in range(3)]}
    asyncio.run(consumer._wait_next_records(1.0))
    assert consumer._new_offset(OURS) == 3
    asyncio.run(consumer.on_partitions_revoked({OURS}))
    assert revoked == [{OURS}]  # Faust's own revocation still runs
    assert consumer.app.receiver.forgotten == 1  # nothing kept from the old assignment
    # As Faust drops its acked offsets: the next owner delivers these again.
    assert consumer._new_offset(OURS) is None


def test_a_commit_stops_where_the_receiver_holds_it(consumer: Any) -> None:
    consumer.fetched = {OURS: [record(OURS, o) for o in range(3)]}
    asyncio.run(consumer._wait_next_records(1.0))
    consumer.app.receiver.holding[OURS] = 1  # record 1 changed a profile not yet written
    assert consumer._new_offset(OURS) == 1
    consumer.app.receiver.holding.clear()  # written
    assert consumer._new_offset(OURS) == 3


def test_the_receiver_writes_what_it_holds_before_faust_commits_to_stop_or_rebalance(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    written_first: list[int] = []

    async def faust_wait_empty(self: Any) -> None:  # waits for streams, then commits
        written_first.append(self.app.receiver.forgotten)

    monkeypatch.setattr(faust_consumer.Consumer, "wait_empty", faust_wait_empty)
    asyncio.run(consumer.wait_empty())
    assert written_first == [1]


def test_a_failure_outside_the_core_stops_the_process_before_any_commit_past_it(
    consumer: Any,
) -> None:
    exits: list[int] = []
    consumer.exit = exits.append
    consumer.app.receiver.fail_at = DELIVERY_SLICE  # the second slice fails
    consumer.fetched = {OURS: [record(OURS, o) for o in range(2 * DELIVERY_SLICE + 4)]}
    asyncio.run(consumer._wait_next_records(1.0))
    assert exits == [EXIT_OUTPUT_FAILED]
    assert consumer._new_offset(OURS) == DELIVERY_SLICE  # nothing past the failure
