"""Records of the worker's own topics, from the fetch straight to the core: no Faust stream.

Faust hands each fetched record to an agent through a chain built per record: a
``Message``, two tasks to race the callback against a pause, the conductor, the
channel's queue, an ``Event``, the stream's iterator (a loop turn per record), and an
ack that keeps per-record bookkeeping for the commit. For an agent that only counts
records that chain is ~108 µs of CPU per record (8,800/s), more than half of a 200 µs
budget (issue 6). So the worker's consumer takes the records of the topics a
:class:`Receiver` names out of each fetch and hands them over itself, in order, a few at
a time; the records of every other topic (the tables' changelogs, read while
recovering) take Faust's own path unchanged.

How a fetch is delivered (:meth:`DirectConsumer._wait_next_records`):

1. Faust fetches as usual; the records of the receiver's topics are taken out of the
   batch before Faust's iterator sees it, the rest is returned to it.
2. Per topic-partition, records before the partition's read position are dropped (a
   fetch that raced a seek), then the rest go to the receiver in slices of at most
   DELIVERY_SLICE records, filled partition after partition: a fetch of a few records in
   each of several partitions is one slice (a ``deliver`` call per partition in it).
   ``deliver`` is synchronous: a record's table writes and output are in the outbox
   before the next record starts, so two records of a partition never interleave.
3. As each partition's part of a slice is delivered, its read position and *done*
   offset (the next offset to commit) move past it; after each slice, and after the
   last, the event loop gets a turn: the outbox's flush, the producer's sender, commits,
   timers and the web server run between slices.
4. After each turn: if Faust has stopped the flow (a rebalance began) or the group's
   generation changed, delivery stops; what was fetched and not delivered is fetched
   again from the committed offsets (Faust seeks there when the flow resumes).

How it is committed: Faust's commit asks :meth:`DirectConsumer._new_offset` per
partition; for a receiver's partition that is its done offset, every record before it
delivered, or an earlier one the receiver holds it at: the first record whose changes
to the profile table are still only in memory (engine/profile_cache.py). Faust then
flushes the producer, which first flushes the outbox (engine/transport.py), and only
then commits. When the worker stops, the receiver writes all it holds first. A
rebalance revokes partitions as Faust does it (the receiver writing all it holds first
too): what was delivered and not yet committed is delivered again by the next owner,
and the replay rule (engine/pipeline.py) makes that harmless.

An error outside the core (a table store failing) stops the process with status 70
before any later commit, like a refused output batch: the records are read again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from engine.outbox import EXIT_OUTPUT_FAILED

log = logging.getLogger("segue.delivery")

DELIVERY_SLICE = 32
"""Records delivered between two turns of the event loop, at most, over the partitions
of a fetch. Each turn costs more than the loop's own work: the outbox's flush hands over
what the slice produced (a batch per topic-partition), the producer's sender sends it,
and the broker's replies and the tables' persisted offsets are taken in. On a backlog,
where every slice is full, 32 took 18% less CPU per event than 8 (177 against 216 µs,
three alternating saturation runs each of ``make bench``'s decide path; 16 took 222, 64
and 128 one run each 220 and 225). 32 records are ~6 ms of decisions. When the worker
keeps up, a fetch holds a few records in each of several partitions (engine/fetchsize.py
sizes it at some twenty records at 1,000 events/s): one slice and one turn for all of
them, with fetches of 10 ms of input, took the worker at 1,000 events/s from 54-58% to
50-53% of a core against a turn per partition (benchmarks/README.md, fifth pass)."""


class Receiver(Protocol):
    """What the consumer hands the records of ``topics`` to."""

    topics: frozenset[str]

    def deliver(self, tp: TP, records: Sequence[Any]) -> None:
        """Process ``records`` (aiokafka ``ConsumerRecord``s of ``tp``, in offset order)
        completely, outputs into the outbox, without awaiting."""

    async def delivered(self) -> None:
        """After each slice: start or wait for the outbox's flush."""

    def held(self, tp: TP) -> int | None:
        """The offset of ``tp`` a commit must not pass yet (None: the done offset):
        records from there changed state that is not yet written."""

    def forget(self) -> None:
        """The worker's partitions change, or it stops: write what is kept in memory
        and not yet written to the tables, then drop what is kept."""


class DirectConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering the topics of the app's ``receiver``
    directly (none while it is None)."""

    exit: Callable[[int], None] = staticmethod(os._exit)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._done: dict[TP, int] = {}

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        receiver: Receiver | None = getattr(self.app, "receiver", None)
        if not records or receiver is None:
            return records, active
        ours: dict[TP, Any] = {}
        rest: dict[TP, Any] = {}
        for tp, recs in records.items():
            (ours if tp.topic in receiver.topics else rest)[tp] = recs
        if not ours:
            return records, active
        generation = self.app.consumer_generation_id
        room = DELIVERY_SLICE
        for tp, recs in ours.items():
            if not self._flowing(generation):
                break
            # Records of a partition that is not active (paused) are skipped, as Faust's
            # own iterator skips them.
            if active is None or tp in active or tp in self._buffered_partitions:
                room = await self._deliver(receiver, tp, recs, generation, room)
        if room < DELIVERY_SLICE:
            await self._turn(receiver)
        return rest, active

    def _flowing(self, generation: int) -> bool:
        return self.flow_active and self.app.consumer_generation_id == generation

    async def _turn(self, receiver: Receiver) -> None:
        await receiver.delivered()
        await asyncio.sleep(0)

    async def _deliver(
        self, receiver: Receiver, tp: TP, records: Sequence[Any], generation: int, room: int
    ) -> int:
        """Deliver ``records`` of ``tp`` into the slice under way, which has ``room``
        records left, giving the loop its turn after each full slice; the room left."""
        start = self._read_offset[tp]
        if start is not None and records and records[0].offset < start:
            records = [r for r in records if r.offset >= start]
        # Faust's commit looks only at the partitions listed in its acked offsets.
        self._acked.setdefault(tp, [])
        inbound = self.app.monitor.stream_inbound_time
        i = 0
        while i < len(records):
            if room == 0:
                await self._turn(receiver)
                room = DELIVERY_SLICE
                if not self._flowing(generation):
                    return room
            part = records[i : i + room]
            try:
                receiver.deliver(tp, part)
            except Exception:
                log.critical(
                    "delivering %s[%d] from offset %d failed; exiting so its records are "
                    "read again after the restart",
                    tp.topic,
                    tp.partition,
                    part[0].offset,
                    exc_info=True,
                )
                logging.shutdown()
                self.exit(EXIT_OUTPUT_FAILED)
                return room
            i += len(part)
            room -= len(part)
            self._read_offset[tp] = self._done[tp] = part[-1].offset + 1
            # What Faust's livelock check reads to tell a stuck stream from a working one.
            inbound[tp] = time.monotonic()
        return room

    def _new_offset(self, tp: TP) -> int | None:
        # Kept, not taken: a commit that fails is retried with it, and Faust commits
        # only an offset past the last one committed.
        done = self._done.get(tp)
        if done is None:
            return super()._new_offset(tp)
        receiver: Receiver | None = getattr(self.app, "receiver", None)
        held = receiver.held(tp) if receiver is not None else None
        return done if held is None else min(done, held)

    async def wait_empty(self) -> None:
        # Faust waits for its streams, then commits, when it stops (before it closes the
        # tables) and on a rebalance: what the receiver holds goes to the tables first,
        # so that commit covers every record delivered.
        self._forget()
        await super().wait_empty()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # as Faust drops its acked offsets of revoked partitions
            self._done.pop(tp, None)
        self._forget()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._forget()
        await super().on_partitions_assigned(assigned, generation_id)

    def _forget(self) -> None:
        receiver: Receiver | None = getattr(self.app, "receiver", None)
        if receiver is not None:
            receiver.forget()
