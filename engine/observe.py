"""What SREs see of a worker: /metrics, /healthz, /readyz, and the Faust-level gauges.

- ``/healthz`` answers 200 whenever the event loop does: the handler running is the proof.
- ``/readyz`` answers 200 only when the worker has partitions, is not rebalancing and has
  finished recovering its tables, i.e. it is consuming; 503 with the reason otherwise.
- Every few seconds the worker's consumer lag per topic and its table sizes are sampled;
  a Faust sensor records commits and rebalances as they happen, and a ``gc`` callback
  the garbage collector's pauses.
- The worker's event loop (the one loop that fetches, decides and produces:
  engine/transport.py) is asked every PROBE_SECONDS to run a callback at a set time; how
  late it runs is ``segue_event_loop_lag_seconds{loop="main"}``: the loop busy with one
  long step (a garbage collection, a large batch), or the process waiting for a CPU.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import faust
from faust.types import TP, TableT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from engine.metrics import Metrics

SAMPLE_SECONDS = 5.0
"""How often lag and table sizes are sampled: well inside a 15 s scrape interval."""
PROBE_SECONDS = 0.05
"""How often each event loop's lateness is probed: 20 callbacks a second, a few µs each.
A stall longer than this is always seen (by the first callback due in it); a shorter
one when a callback falls due in it."""


class _Sensor(faust.Sensor):
    """Commits, rebalances and table recovery, as Faust reports them.

    A rebalance, as Faust's hooks see it::

        on_rebalance_start     partitions revoked; the group is re-forming
              |                (join, assignment)
        on_rebalance_return    the new assignment is taken: table stores opened for it,
              |                recovery signalled
              |                (changelog highwaters read, changelogs replayed)
        on_rebalance_end       tables caught up, streams resumed

    ``segue_recovery_seconds`` is the second span: reading the changelogs' highwaters and
    replaying what the local stores lack. Joining the group and opening the stores (where
    RocksDB replays its write-ahead log after a crash) come before it; benchmarks/state.py
    times those from the worker's log. The hooks share the ``state`` dict that
    ``on_rebalance_start`` returns, so a rebalance that starts over measures its last try.
    """

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.metrics = metrics
        self.clock = clock

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self.metrics.last_commit.set(time.time())

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self.metrics.rebalances.inc()
        return {}

    def on_rebalance_return(self, app: Any, state: dict[str, Any]) -> None:
        state["assigned_at"] = self.clock()

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        assigned_at = state.get("assigned_at")
        if assigned_at is not None:
            self.metrics.recovery.set(self.clock() - assigned_at)


class _GcTimer:
    """Times each collection of the garbage collector (``gc.callbacks``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.pauses = [metrics.gc_pauses.labels(generation=str(g)) for g in range(3)]
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[info["generation"]].observe(time.perf_counter() - self.started)


class LoopLag:
    """Asks ``loop`` every ``interval`` seconds to run a callback at a set time and tells
    ``observe`` how late it ran, in seconds. Started from any thread; it stops with the
    loop (a callback still pending when a loop closes is dropped)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        observe: Callable[[float], None],
        interval: float = PROBE_SECONDS,
    ) -> None:
        self._loop = loop
        self._observe = observe
        self._interval = interval
        self._due = 0.0

    def start(self) -> None:
        self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        # The process's monotonic clock, not the loop's: uvloop's is cached per turn.
        self._due = time.monotonic() + self._interval
        self._loop.call_later(self._interval, self._ran)

    def _ran(self) -> None:
        self._observe(max(0.0, time.monotonic() - self._due))
        self._arm()


def install(
    app: faust.App,
    metrics: Metrics,
    tables: Mapping[str, TableT[Any, Any]],
    *,
    count_keys: bool,
    consumed: Collection[str],
) -> None:
    """Add the sensor, the sampling timer and the web endpoints to ``app``.

    ``count_keys`` is off for RocksDB-backed tables: counting their keys reads them all,
    so their size is RocksDB's own estimate instead. ``consumed`` names the topics whose
    lag is sampled: those the worker processes and commits. The tables' changelog
    partitions are assigned to it too, but read only while recovering and never
    committed: their "lag" would be every record the tables ever wrote.
    """
    app.sensors.add(_Sensor(metrics))
    gc.callbacks.append(_GcTimer(metrics))

    @app.task  # type: ignore[untyped-decorator]
    async def probe_loop() -> None:
        LoopLag(asyncio.get_running_loop(), metrics.loop_lag.labels(loop="main").observe).start()

    @app.timer(SAMPLE_SECONDS, name="segue.observe.sample")  # type: ignore[untyped-decorator]
    async def sample() -> None:
        consumer: Any = app.consumer
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            if tp.topic not in consumed:
                continue
            # The committed offset is the next record to read; Faust keeps it privately.
            committed = consumer._committed_offset.get(tp) or 0
            highwater = consumer.highwater(tp) or 0
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - committed)
        for topic, records in lag.items():
            metrics.consumer_lag.labels(topic=topic).set(records)
        for name, table in tables.items():
            keys = len(table) if count_keys else _estimated_keys(app, table)
            metrics.table_keys.labels(table=name).set(keys)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type=, so set the header itself.
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            reason = _not_ready(app)
            if reason is None:
                return self.json({"status": "ready"})
            return self.json({"status": "not ready", "reason": reason}, status=503)


def _not_ready(app: faust.App) -> str | None:
    if app.rebalancing:
        return "rebalancing"
    tables: Any = app.tables
    if tables.recovery.in_recovery:
        return "recovering tables from their changelogs"
    if not app.consumer.assignment():
        return "no partitions assigned"
    return None


def _estimated_keys(app: faust.App, table: TableT[Any, Any]) -> int:
    """RocksDB's estimate of the keys in this worker's active partitions of ``table``;
    0 for a store that has none. Reads one property per partition: cheap at any size."""
    dbs: dict[int, Any] = getattr(table.data, "_dbs", {})  # Faust's store keeps it privately
    actives = app.assignor.assigned_actives()
    topic = table.changelog_topic.get_topic_name()
    return sum(
        int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        for partition, db in dbs.items()
        if TP(topic, partition) in actives
    )
