"""Reading a whole compacted state topic (control, model snapshots) from a worker.

Every worker needs every record of these topics, not a share of them, so it reads them
outside the consumer group: a consumer of its own, assigned all partitions, from the
beginning, committing nothing. ``catch_up`` reads to the end offsets of the moment it
starts, which is what "the state at start" means; ``poll`` then hands over what came
since, for a reader that follows the topic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.admin import AdminError, connection_kwargs, describe, start_client
from engine.settings import Settings

POLL_MS = 500

Take = Callable[[Any], None]
"""Called with each aiokafka ConsumerRecord, in offset order per partition."""


class CompactedReader:
    def __init__(self, settings: Settings, topic: str, take: Take, *, what: str) -> None:
        """``what`` names the topic in the error a missing topic raises."""
        self.settings = settings
        self.topic = topic
        self.take = take
        self.what = what
        self._consumer: AIOKafkaConsumer | None = None

    async def catch_up(self) -> None:
        """Read from the beginning to the end offsets of now."""
        consumer = AIOKafkaConsumer(
            **connection_kwargs(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await start_client(consumer, self.settings)
        self._consumer = consumer  # from here stop() closes it, whatever fails next
        count = next(
            (t.partitions for t in await describe(self.settings) if t.spec.name == self.topic), None
        )
        if not count:
            raise AdminError(
                f"{self.what} topic {self.topic} does not exist: run `segue topics create`"
            )
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)

        async def behind() -> bool:
            for tp, end in ends.items():
                if await consumer.position(tp) < end:
                    return True
            return False

        while await behind():
            await self.poll()

    async def poll(self) -> None:
        """Hand over the records that arrived, waiting up to POLL_MS for some."""
        if self._consumer is None:
            await self.catch_up()
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=POLL_MS)
        for records in batch.values():
            for rec in records:
                self.take(rec)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
