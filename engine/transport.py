"""Faust's Kafka transport: its consumer on the worker's own event loop, with the fetch
wait and size under our control.

**One event loop.** faust-streaming runs aiokafka's consumer in a thread of its own, on
a second event loop, and every call into it (each fetch, commit, seek) crosses between
the threads through a method queue and futures. With the records taken straight from
the fetch (engine/delivery.py), that crossing was most of what the worker spent per
fetch beyond decoding it: at 1,000 events/s the consumer thread took 21% of the worker's
CPU, the main loop's ``getmany`` across the threads another 17%, and the two threads
took turns at the interpreter lock. Here the consumer's "thread" is a service on the
worker's loop: aiokafka's consumer (its fetcher, heartbeat and coordinator tasks) runs
there, and Faust's calls into it are plain awaits. ``make bench`` path (c) at 1,000
events/s, alternating on one warm broker: the worker at 33-36% of a core against 34-40%
with the thread (five runs each; benchmarks/README.md, ninth pass). The consumer's tasks
run between the handler's slices of records (engine/delivery.py), as the producer's do.

**The fetch wait.** faust-streaming 0.15.3 builds its worker consumer with
``fetch_max_wait_ms=1500``, fixed. With aiokafka's fetcher that wait shows up as
latency: while the worker still holds records of one partition, the next fetch request
leaves that partition out, and the broker may hold the request for the whole wait when
the other partitions are idle; new events on the left-out partition wait with it.
Measured with ``make bench`` (issue 6): decisions at 300 events/s had p99 223-610 ms
with 1,500 ms, against 24-59 ms with 100 ms. A shorter wait costs only more (empty)
fetch requests on an idle worker.

The same goes for ``fetch_min_bytes`` (Faust leaves aiokafka's 1): how much data the
broker waits for, up to the wait, before it answers a fetch. It is set again from the
input rate after every fetch (engine/fetchsize.py).

**The producer's metadata.** aiokafka's producer keeps the metadata of every topic in
the cluster for its life, and on a shared cluster that is tens of thousands of objects
for the garbage collector's full collections to walk while the loop stands still; the
worker's producer follows its own topics instead (``_Producer.on_start``).

The overrides are attributes of the consumer Faust creates, set before it starts (the
fetcher reads them at start): aiokafka 0.14.0 keeps them as ``_fetch_max_wait_ms`` and
``_fetch_min_bytes``; its fetcher keeps its own ``_fetch_min_bytes`` and reads it for
every fetch request it builds, so it is set there as the fetches go. Both versions are
pinned in pyproject.toml; tests/unit/test_transport.py checks the values on the
consumer a worker builds, the size its fetcher asks for, and that the consumer runs on
the loop that calls it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka

from engine.delivery import DirectConsumer, Receiver
from engine.fetchsize import FetchSize

log = logging.getLogger("segue.transport")


class _LoopConsumer(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, without the thread: started, called and stopped
    on the loop of the Faust consumer that owns it.

    mode's ``ServiceThread`` starts a thread that runs ``_serve`` on the thread's loop
    (start, then wait to be stopped, then shut down) and hands calls to it through a
    method queue; here ``_serve`` is a task of the owner's loop, and a call is awaited
    where it is made. Rebalances still reach the owner through its own method queue
    (Faust's ``threadsafe_partitions_*``), a queue on the same loop."""

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert not self._thread_started.is_set()
        self._thread_started.set()
        # ``_serve`` sets this once started, or fails it with what stopped the start.
        self._thread_running = self.parent_loop.create_future()
        self._serving = self.parent_loop.create_task(self._serve())
        self._serving.add_done_callback(_retrieved)
        try:
            await self._thread_running
        finally:
            self._thread_running = None

    async def stop(self) -> None:
        # Waits for ``_serve`` to shut the consumer down (mode's ``wait_for_shutdown``).
        await super().stop()
        if self._serving is not None:
            await asyncio.wait({self._serving})

    async def on_thread_started(self) -> None:
        """Nothing to start: no method queue, calls are awaited directly."""

    async def _gather_remaining_tasks(self) -> None:
        """Nothing to sweep: the loop is the worker's, and its other tasks are not the
        consumer's to cancel; aiokafka's consumer stops its own."""

    async def call_thread(
        self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        # Faust hands some synchronous methods through here too (``subscribe``).
        result: Any = fun(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]
        consumer._fetch_min_bytes = self.app.fetch_size.value  # type: ignore[attr-defined]
        return consumer

    async def _fetch_records(self, consumer: Any, *args: Any, **kwargs: Any) -> Any:
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


def _retrieved(task: asyncio.Task[None]) -> None:
    # A failure of ``_serve`` is the service's crash, reported there; taking it here
    # keeps asyncio from reporting it again as never retrieved.
    if not task.cancelled():
        task.exception()


class _Consumer(DirectConsumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _LoopConsumer(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _Producer(faust_aiokafka.Producer):
    """Faust's producer, whose flush first runs the app's ``before_flush`` hooks: Faust
    flushes the producer before it commits offsets, and the worker's outbox
    (engine/outbox.py) must be in the producer by then; and which keeps the metadata of
    the worker's own topics, not the whole cluster's (``on_start``)."""

    async def on_start(self) -> None:
        """Start aiokafka's producer, then have it follow the worker's own topics only.

        aiokafka's producer follows no topic until it sends to one its metadata lacks,
        and a client that follows none asks for the metadata of every topic (Faust
        forces such an update after it declares each of its topics, and the client
        refreshes it every few minutes). From then on no topic is missing, so the
        producer keeps the whole cluster's metadata for its life, some five objects per
        partition (a ``TopicPartition``, a ``PartitionMetadata``, its lists). Those outlive two
        collections, so every full collection of the garbage collector walks them, the
        event loop standing still meanwhile: on a broker with 3,140 topics (9,206
        partitions) they were ~46,000 of the 44,000-96,000 objects each full collection
        walked, and the full collections of a run at 1,000 events/s took 10-100 ms each,
        every few seconds (benchmarks/README.md, fourteenth pass).

        Only topics that exist now are named (one request for the cluster's metadata
        finds them): a metadata request for a missing one may create it with the
        broker's defaults (``auto.create.topics.enable``). A topic sent to later that is
        not followed (a changelog Faust creates after this) is added by aiokafka on its
        first send, one metadata request, as it adds any topic its metadata lacks."""
        await super().on_start()
        client = self._ensure_producer().client
        try:
            existing = (await client.fetch_all_metadata()).topics()
        except KafkaError as exc:
            log.warning(
                "cannot read the cluster's topics (%s); the producer keeps the metadata "
                "of every topic",
                exc,
            )
            return
        own = self.app.owned_topics & existing  # type: ignore[attr-defined]
        if own:  # none would mean every topic to aiokafka, as before
            await client.set_topics(own)

    async def flush(self) -> None:
        for hook in self.app.before_flush:  # type: ignore[attr-defined]
            await hook()
        await super().flush()


class App(faust.App):
    """``faust.App`` whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch,
    for as much data as ``fetch_size`` says, and hands the records of ``receiver``'s
    topics to it directly (engine/delivery.py), and whose producer runs ``before_flush``
    before every flush (so before every commit) and keeps the metadata of
    ``owned_topics`` only."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int, fetch_size: FetchSize, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_size = fetch_size
        self.before_flush: list[Callable[[], Awaitable[None]]] = []
        self.owned_topics: frozenset[str] = frozenset()
        """The topics the worker reads and writes, its tables' changelogs among them: those
        whose metadata its producer keeps (set by ``engine.app.build_app``)."""
        self.receiver: Receiver | None = None
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer(self) -> Any:
        return _Producer(self.producer_transport, loop=self.loop, beacon=self.beacon)
