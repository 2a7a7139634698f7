"""Faust's Kafka transport, with the consumer's fetch wait under our control.

faust-streaming 0.15.3 builds its worker consumer with ``fetch_max_wait_ms=1500``, fixed.
With aiokafka's fetcher that wait shows up as latency: while the worker still holds
records of one partition, the next fetch request leaves that partition out, and the
broker may hold the request for the whole wait when the other partitions are idle; new
events on the left-out partition wait with it. Measured with ``make bench`` (issue 6):
decisions at 300 events/s had p99 223-610 ms with 1,500 ms, against 24-59 ms with
100 ms. A shorter wait costs only more (empty) fetch requests on an idle worker.

The same goes for ``fetch_min_bytes`` (Faust leaves aiokafka's 1): how much data the
broker waits for, up to the wait, before it answers a fetch. It is set again from the
input rate after every fetch the consumer thread hands over (engine/fetchsize.py).

The overrides are attributes of the consumer Faust creates, set before it starts (the
fetcher reads them at start): aiokafka 0.14.0 keeps them as ``_fetch_max_wait_ms`` and
``_fetch_min_bytes``; its fetcher keeps its own ``_fetch_min_bytes`` and reads it for
every fetch request it builds, so the consumer thread sets that one as it goes. Both
versions are pinned in pyproject.toml; tests/unit/test_transport.py checks the values
on the consumer a worker builds and the size its fetcher asks for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from engine.delivery import DirectConsumer, Receiver
from engine.fetchsize import FetchSize


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        consumer._fetch_min_bytes = self.app.fetch_size.value  # type: ignore[attr-defined]
        return consumer

    async def _fetch_records(self, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        # Runs in the consumer thread, like the fetcher it sets.
        records = await super()._fetch_records(consumer, *args, **kwargs)
        size: FetchSize = self.app.fetch_size  # type: ignore[attr-defined]
        if size.gather_seconds:  # otherwise the floor, set at start, is kept
            nbytes = sum(
                r.serialized_key_size + r.serialized_value_size
                for recs in records.values()
                for r in recs
            )
            consumer._fetcher._fetch_min_bytes = size.fetched(nbytes)
        return records


class _Consumer(DirectConsumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _Producer(faust_aiokafka.Producer):
    """Faust's producer, whose flush first runs the app's ``before_flush`` hooks: Faust
    flushes the producer before it commits offsets, and the worker's outbox
    (engine/outbox.py) must be in the producer by then."""

    async def flush(self) -> None:
        for hook in self.app.before_flush:  # type: ignore[attr-defined]
            await hook()
        await super().flush()


class App(faust.App):
    """``faust.App`` whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch,
    for as much data as ``fetch_size`` says, and hands the records of ``receiver``'s
    topics to it directly (engine/delivery.py), and whose producer runs ``before_flush``
    before every flush (so before every commit)."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int, fetch_size: FetchSize, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_size = fetch_size
        self.before_flush: list[Callable[[], Awaitable[None]]] = []
        self.receiver: Receiver | None = None
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer(self) -> Any:
        return _Producer(self.producer_transport, loop=self.loop, beacon=self.beacon)
