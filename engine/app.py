"""The Faust shell around the functional core: topics and tables in, sends out.

The agent reads raw bytes (Faust acks records it cannot decode, and acks a record
whose agent raised), hands each record to :func:`engine.pipeline.process`, and carries
out the result: the profile goes to the table, the sends to the outbox, which hands
them to the producer a batch per partition (engine/outbox.py). Nothing
escapes the agent as an exception; an unexpected error dead-letters the record with
``internal_error`` so it is never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import KafkaError
from faust.types import TP

from engine import model_store, observe
from engine.admin import AdminError
from engine.changelog import ChangelogTable
from engine.control import CatalogueFollower
from engine.decide import DecideConfig
from engine.journeys import Catalogue, default_catalogue, load_catalogue
from engine.metrics import Metrics
from engine.orchestrate import catalogue_version
from engine.outbox import Outbox
from engine.pipeline import Core, Limits, Result, reject
from engine.profile import Profile
from engine.records import Record, expected_partition
from engine.result_metrics import observe_result
from engine.settings import Settings
from engine.timers import SystemClock, TimerIndex, decode_wake, encode_wake
from engine.transport import App as SegueApp
from models.policy import Policy
from models.uplift import UpliftHeads
from topics.catalogue import DLQ_MAX_MESSAGE_BYTES, TopicNames
from topics.events import Rejection

Step = Callable[..., Result]
"""One of Core.ingest, Core.link, Core.stitched: (record, state, now_ms=...) -> Result."""

log = logging.getLogger("segue.worker")

INGEST_AGENT = "segue.ingest"
LINK_AGENT = "segue.identity"
STITCHED_AGENT = "segue.stitched"
TIMER_AGENT = "segue.timers"
PROFILE_TABLE = "profiles"
IDENTITY_TABLE = "identities"
TIMER_TABLE = "timers"
CONTROL_RETRY_SECONDS = 5.0
"""Pause before reading the control topic again when it cannot be read."""


def build_app(
    settings: Settings,
    catalogue: Catalogue | None = None,
    model: model_store.Restored | None = None,
) -> faust.App:
    """The worker app: the ingest agent over every input topic, the identity and stitched
    agents over their internal topics, the profile and identity tables, and the web views.

    ``catalogue`` is the journey catalogue in force when the worker starts (the CLI reads
    it from the control topic first); by default the configured or built-in one.
    ``model`` is the policy restored from the model topic (engine/model_store.py); by
    default a fresh one."""
    credentials: Any = None
    if settings.kafka_sasl_username:
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism="PLAIN",
        )
    datadir = settings.data_dir / f"worker-{settings.app_id}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = SegueApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        broker_credentials=credentials,
        store=settings.table_store,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Records published before the first worker started are customers' history too.
        consumer_auto_offset_reset="earliest",
        # A dead letter carries the whole original record: allow the largest one.
        producer_max_request_size=DLQ_MAX_MESSAGE_BYTES,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 4,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        autodiscover=False,
    )
    names = TopicNames(settings.topic_prefix)
    inputs = app.topic(*names.inputs, schema=_raw())
    # Internal hops of identity stitching; Faust creates them with the same partition
    # count, so they are co-partitioned with the inputs (see engine/pipeline.py).
    identity = app.topic(
        identity_topic(settings),
        schema=_raw(),
        internal=True,
        partitions=settings.partitions,
    )
    stitched = app.topic(
        stitched_topic(settings),
        schema=_raw(),
        internal=True,
        partitions=settings.partitions,
    )
    # Timer nudges from this worker's clock, keyed by customer (engine/timers.py).
    nudges = app.topic(
        timer_topic(settings),
        schema=_raw(),
        internal=True,
        partitions=settings.partitions,
    )
    # key_type/value_type bytes is what makes a table use the raw codec; a schema alone
    # leaves it on JSON, and recovery from the changelog then fails on every record.
    profiles, identities, timers = (
        app.Table(
            name, partitions=settings.partitions, default=None, key_type=bytes, value_type=bytes
        )
        for name in (PROFILE_TABLE, IDENTITY_TABLE, TIMER_TABLE)
    )
    metrics = Metrics()
    policy = model.policy if model is not None else fresh_policy(settings)
    core = build_core(settings, policy)
    model_store.install(app, settings, policy, metrics, model)

    journeys = Journeys(metrics, catalogue or initial_catalogue(settings))
    index = TimerIndex()
    clock = SystemClock()

    class TableState:
        @property
        def catalogue(self) -> Catalogue:
            return journeys.current

        def profile(self, key: str) -> Profile | None:
            stored = profiles.get(key.encode())
            return Profile.decode(stored) if stored is not None else None

        def linked(self, anonymous_id: str) -> str | None:
            stored = identities.get(anonymous_id.encode())
            return stored.decode() if stored is not None else None

    state = TableState()
    outbox = Outbox(lambda: cast(Any, app.producer)._ensure_producer())
    app.before_flush.append(outbox.flush)
    # Table writes send their changelog records through the outbox (engine/changelog.py).
    profile_rows, identity_rows, timer_rows = (
        ChangelogTable(t, outbox) for t in (profiles, identities, timers)
    )

    def handle(step: Step, rec: Record) -> None:
        started = time.perf_counter()
        now_ms = time.time_ns() // 1_000_000
        try:
            result = step(rec, state, now_ms=now_ms)
        # Any error in the core is a bug or a bad record we did not foresee: dead-letter
        # the record and go on, because an error escaping the agent would be acked.
        except Exception as exc:
            log.exception("internal error on %s/%d@%d", rec.topic, rec.partition, rec.offset)
            why = Rejection("internal_error", f"{type(exc).__name__}: {exc}")
            result = reject(rec, why, names, now_ms=now_ms)
        # Reassign, never mutate: only a set writes the changelog. Nothing here awaits,
        # so no other record of this partition interleaves.
        part = rec.partition  # a table's partition is that of the record being processed
        for key, profile in result.writes.items():
            if profile is None:
                profile_rows.delete(key.encode(), part, started)
            else:
                profile_rows.set(key.encode(), profile.encode(), part, started)
        for anonymous_id, customer_id in result.links.items():
            identity_rows.set(anonymous_id.encode(), customer_id.encode(), part, started)
        for key, wake in result.timers.items():
            if wake is None:
                timer_rows.delete(key.encode(), part, started)
            else:
                timer_rows.set(key.encode(), encode_wake(wake), part, started)
                index.note(key, wake)
        # Into the outbox, before this record is acked: flushed into the producer before
        # any commit (engine/outbox.py says how order and delivery are kept).
        outbox.add(result.sends, started)
        observe_result(metrics, names, rec, result, started)

    async def run(step: Step, stream: faust.StreamT[bytes]) -> None:
        queued = cast(Any, stream.channel).queue  # what the consumer has handed this agent
        async for event in stream.events():
            msg = event.message
            headers = msg.headers.items() if isinstance(msg.headers, dict) else msg.headers
            rec = Record(msg.topic, msg.partition, msg.offset, msg.key, msg.value, [*headers])
            handle(step, rec)
            if outbox.full():
                await outbox.flush()
            elif queued.empty() or outbox.due(time.perf_counter()):
                outbox.flush_soon()

    @app.agent(inputs, name=INGEST_AGENT, concurrency=1)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        await run(core.ingest, stream)

    @app.agent(identity, name=LINK_AGENT, concurrency=1)
    async def link(stream: faust.StreamT[bytes]) -> None:
        await run(core.link, stream)

    @app.agent(stitched, name=STITCHED_AGENT, concurrency=1)
    async def stitch(stream: faust.StreamT[bytes]) -> None:
        await run(core.stitched, stream)

    @app.agent(nudges, name=TIMER_AGENT, concurrency=1)
    async def fire(stream: faust.StreamT[bytes]) -> None:
        await run(core.tick, stream)

    def owned(key: str) -> bool:
        tp = TP(nudges.get_topic_name(), expected_partition(key.encode(), settings.partitions))
        return tp in app.assignor.assigned_actives()

    def stored_wake(key: str) -> int | None:
        return decode_wake(timers.get(key.encode()))

    @timers.on_recover
    async def reindex() -> None:
        index.rebuild(
            (k.decode(), wake) for k, v in timers.items() if (wake := decode_wake(v)) is not None
        )
        metrics.timers_pending.set(len(index))

    @app.timer(interval=settings.timer_tick_seconds, name="segue.timer-clock")  # type: ignore[untyped-decorator]
    async def nudge_due() -> None:
        now_ms = clock.now_ms()
        for key in index.due(now_ms, stored_wake, owned):
            value = orjson.dumps({"customer_id": key, "now_ms": now_ms})
            await nudges.send(key=key.encode(), value=value)
        metrics.timers_pending.set(len(index))

    @app.task  # type: ignore[untyped-decorator]
    async def follow_catalogue() -> None:
        await journeys.follow(settings)

    observe.install(
        app,
        metrics,
        {PROFILE_TABLE: profiles, IDENTITY_TABLE: identities, TIMER_TABLE: timers},
        count_keys=settings.table_store.startswith("memory://"),
    )
    return app


def build_core(settings: Settings, policy: Policy | None = None) -> Core:
    """The functional core a worker with these settings runs (benchmarks build it too),
    with ``policy`` (a restored one) or a fresh one."""
    return Core(
        policy=fresh_policy(settings) if policy is None else policy,
        names=TopicNames(settings.topic_prefix),
        identity_topic=identity_topic(settings),
        stitched_topic=stitched_topic(settings),
        timer_topic=timer_topic(settings),
        cfg=DecideConfig(
            exploration_rate=settings.exploration_rate,
            min_score=settings.min_score,
            holdout_share=settings.holdout_share,
            holdout_salt=settings.holdout_salt,
        ),
        limits=Limits(
            max_event_bytes=settings.max_event_bytes,
            max_future_ms=settings.max_future_skew_seconds * 1000,
            partitions=settings.partitions,
            dedup_window_ms=settings.dedup_window_seconds * 1000,
            dedup_max_ids=settings.dedup_max_ids,
            attribution_window_ms=settings.attribution_window_seconds * 1000,
        ),
    )


def fresh_policy(settings: Settings) -> UpliftHeads:
    """The policy a worker starts with when no snapshot is restored."""
    return UpliftHeads(learning_rate=settings.learning_rate)


def identity_topic(settings: Settings) -> str:
    return f"{settings.app_id}-identity-links"


def stitched_topic(settings: Settings) -> str:
    return f"{settings.app_id}-stitched-events"


def timer_topic(settings: Settings) -> str:
    return f"{settings.app_id}-timer-nudges"


def _raw() -> faust.Schema[bytes, bytes]:
    """Raw bytes in and out: the agent validates, so Faust decodes (and drops) nothing.

    A fresh schema per topic: Faust mutates the schema it is given, so one shared
    instance can turn a topic back to JSON.
    """
    return faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def initial_catalogue(settings: Settings) -> Catalogue:
    """The catalogue a worker starts with, until the control topic names another."""
    if not settings.journeys_file:
        return default_catalogue()
    path = Path(settings.journeys_file)
    return load_catalogue(path.read_text(), filename=str(path))


class Journeys:
    """The catalogue in force on this worker, switched by the control topic."""

    def __init__(self, metrics: Metrics, initial: Catalogue) -> None:
        self.metrics = metrics
        self.current = initial
        self._show(initial)
        log.info("journey catalogue %s in force", catalogue_version(initial))

    def switch(self, cat: Catalogue) -> None:
        if cat.digest != self.current.digest:
            log.info("journey catalogue %s in force", catalogue_version(cat))
        self.current = cat
        self._show(cat)

    async def follow(self, settings: Settings) -> None:
        """Follow the control topic for the life of the worker; if it cannot be read,
        go on with the catalogue at hand and try again. (The agents never wait for this:
        a Faust agent that does not drain its stream at start can stall for good.)"""
        while True:
            follower = CatalogueFollower(
                settings, self.switch, rejected=lambda _: self.metrics.catalogue_rejected.inc()
            )
            try:
                await follower.follow()
            except (AdminError, KafkaError, OSError) as exc:
                log.error(
                    "cannot read the journey catalogue from the control topic (%s); "
                    "running %s until it can be read",
                    exc,
                    catalogue_version(self.current),
                )
                await asyncio.sleep(CONTROL_RETRY_SECONDS)
            finally:
                await follower.stop()

    def _show(self, cat: Catalogue) -> None:
        self.metrics.catalogue.clear()
        self.metrics.catalogue.labels(catalogue=cat.name, version=str(cat.version)).set(1)
