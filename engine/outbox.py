"""The worker's output records, handed to Kafka one batch per topic-partition.

Why not ``topic.send`` per record: Faust wraps each send in a ``FutureMessage``, calls
its sensors, awaits aiokafka's ``send`` and adds a done-callback that runs on the event
loop when the record is acknowledged. A decision point sends two or three records, and
with the table's changelog record that was ~170 µs of a ~1,100 µs event (make bench,
issue 6). Here the records of a run of events go into one aiokafka ``BatchBuilder`` per
topic-partition, handed over with ``send_batch``: one coroutine and one future per batch.

The guarantees, in the order they are kept:

1. **Order.** Records are appended in processing order. A flush takes everything
   appended so far, under a lock, and hands each topic-partition's records over in that
   order; aiokafka keeps one batch per partition in flight, so a partition's records reach
   the broker in the order the worker produced them, across its topics too.
2. **Flush before commit.** The handler appends an event's records before the consumer
   counts the event delivered (engine/delivery.py). Faust's commit awaits
   ``producer.flush()`` before it commits offsets; the worker's producer
   (engine/transport.py) first flushes the outbox into aiokafka, whose flush then waits
   for every batch to be acknowledged. So no committed offset is ahead of an output it
   produced.
3. **Nothing dropped.** A batch the producer refuses, or cannot deliver after its retries,
   stops the process (exit status 70) before any later commit can complete: its events
   are read again after the restart and, by the replay rule (engine/pipeline.py), their
   decisions sent again under the same ids. Faust's own ``send`` would log the failure
   and let the next commit go ahead.

When: the handler starts a flush after every few records the consumer delivers (a
flush under way takes what arrives meanwhile, so under a steady stream flushes run back
to back). The flush runs as its own task, so the worker reads on while aiokafka takes
the batches (it accepts a partition's next batch only once the previous one is on its
way, about a round trip to the broker), every partition's at once; the worker waits for
it only when MAX_PENDING records are queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from functools import partial
from typing import Any

from engine.records import Send, expected_partition

log = logging.getLogger("segue.outbox")

MAX_PENDING = 5_000
"""Records queued (some 2,000 events' output) beyond which the worker waits for the flush
instead of reading on: backpressure when the broker is slower than the worker."""
EXIT_OUTPUT_FAILED = 70
"""Exit status when the producer refuses output (EX_SOFTWARE); a supervisor restarts us."""

Exit = Callable[[int], None]
Delivered = Callable[[int, int], None]
"""Told (partition, offset of the batch's last record) when a batch is acknowledged."""


class Outbox:
    """Records waiting to be handed to an aiokafka producer (``producer()`` returns it:
    Faust starts its producer after the app is built)."""

    def __init__(self, producer: Callable[[], Any], exit: Exit = os._exit) -> None:
        self._producer = producer
        self._exit = exit
        self._pending: list[Send] = []
        self._lock = asyncio.Lock()
        self._flushing: asyncio.Future[None] | None = None
        self._hooks: dict[str, Delivered] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, sends: list[Send]) -> None:
        """Queue ``sends``."""
        self._pending += sends

    def on_delivered(self, topic: str, hook: Delivered) -> None:
        """Call ``hook`` for each batch of ``topic`` the broker acknowledges."""
        self._hooks[topic] = hook

    def full(self) -> bool:
        """True when an agent should wait for a flush: the broker is not keeping up."""
        return len(self._pending) >= MAX_PENDING

    def flush_soon(self) -> None:
        """Flush in the background, unless a flush is under way: it takes what arrives
        meanwhile before it ends. The agent goes on with the next record."""
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Hand every queued record to the producer, one batch per topic-partition (more
        when a partition's records outgrow the producer's batch size); return when all
        of them, those added meanwhile too, are in the producer's hands."""
        async with self._lock:
            while self._pending:
                sends, self._pending = self._pending, []
                try:
                    await self._hand_over(sends)
                except Exception:
                    self._fail(len(sends))
                    return

    async def _hand_over(self, sends: list[Send]) -> None:
        producer = self._producer()
        counts: dict[str, int] = {}
        for topic in {s.topic for s in sends}:
            if not producer._metadata.partitions_for_topic(topic):
                await producer.client._wait_on_metadata(topic)  # first use: fetch it
            counts[topic] = len(producer._metadata.partitions_for_topic(topic))
        batches: dict[tuple[str, int], list[Any]] = {}
        for s in sends:
            partition = s.partition
            if partition is None and s.key is not None:
                partition = expected_partition(s.key, counts[s.topic])
            elif partition is None:  # no key: the producer's partitioner picks one at random
                partition = producer._partition(s.topic, None, None, None, s.key, s.value)
            tp = (s.topic, partition)
            builders = batches.get(tp)
            if builders is None:
                builders = batches[tp] = [producer.create_batch()]
            record = {"timestamp": None, "key": s.key, "value": s.value, "headers": s.headers}
            if builders[-1].append(**record) is None:  # full: the first record always fits
                builders.append(producer.create_batch())
                builders[-1].append(**record)
        # All partitions at once: aiokafka takes a partition's next batch only once its
        # previous one has gone out, so one at a time a flush would wait a round trip to
        # the broker per partition still sending (~15 here: 0.9 s at 1,000 events/s).
        await asyncio.gather(
            *(self._send(producer, tp, builders) for tp, builders in batches.items())
        )

    async def _send(self, producer: Any, tp: tuple[str, int], builders: list[Any]) -> None:
        topic, partition = tp
        hook = self._hooks.get(topic)
        for builder in builders:  # in order: a partition's batches go out one after another
            builder.close()  # what it holds is what the hook is told about
            future = await producer.send_batch(builder, topic, partition=partition)
            future.add_done_callback(partial(self._delivered, hook, builder.record_count()))

    def _delivered(self, hook: Delivered | None, records: int, future: asyncio.Future[Any]) -> None:
        # Cancelled: the producer is stopping, after the last commit (whose flush waited for
        # every batch); what it did not deliver belongs to events not committed.
        if future.cancelled():
            return
        if future.exception() is None:
            if hook is not None:
                meta = future.result()
                hook(meta.partition, meta.offset + records - 1)
            return
        log.critical(
            "the producer could not deliver a batch of output (%r); exiting so its events "
            "are read again after the restart",
            future.exception(),
        )
        logging.shutdown()
        self._exit(EXIT_OUTPUT_FAILED)

    def _fail(self, records: int) -> None:
        log.critical(
            "cannot hand %d output records to the producer; exiting so their events are "
            "read again after the restart",
            records,
            exc_info=True,
        )
        logging.shutdown()
        self._exit(EXIT_OUTPUT_FAILED)
