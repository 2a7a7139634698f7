"""The Faust shell around the functional core: topics and tables in, sends out.

Faust runs the worker: group membership and assignment, the changelog-backed tables and
their recovery, commits, timers, the web server. The records of the worker's topics do
not go through Faust agents: the consumer hands them, as raw bytes, straight to the
handler (engine/delivery.py, engine/handler.py), which runs the core's step for each and
carries out the result: table writes, and sends into the outbox, which hands them to the
producer a batch per partition (engine/outbox.py).
"""

from __future__ import annotations

import asyncio
import logging
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
from engine.fetchsize import FetchSize
from engine.handler import Handler, Step, Tables
from engine.journey_loader import default_catalogue, load_catalogue
from engine.journeys import Catalogue
from engine.metrics import Metrics
from engine.orchestrate import catalogue_version
from engine.outbox import Outbox
from engine.pipeline import Core, Limits
from engine.records import expected_partition
from engine.settings import Settings
from engine.timers import SystemClock, TimerIndex, decode_wake
from engine.transport import App as SegueApp
from models.policy import Policy
from models.uplift import UpliftHeads
from topics.catalogue import DLQ_MAX_MESSAGE_BYTES, TopicNames, topic_catalogue

log = logging.getLogger("segue.worker")

PROFILE_TABLE = "profiles"
IDENTITY_TABLE = "identities"
TIMER_TABLE = "timers"
OUTPUT_BATCH_BYTES = 512 * 1024
"""Largest batch the outbox hands the producer per topic-partition. aiokafka sends one
request at a time per broker and a partition's next batch only with the next request:
with its 16 KiB default, a flush of a few thousand records (a backlog) made some 15
batches per partition, and the last left 15 round trips (0.4-1.5 s) later. Within the
broker's default 1 MiB limit."""
CONTROL_RETRY_SECONDS = 5.0
"""Pause before reading the control topic again when it cannot be read."""


def build_app(
    settings: Settings,
    catalogue: Catalogue | None = None,
    model: model_store.Restored | None = None,
) -> faust.App:
    """The worker app: the input topics, the internal topics of identity stitching and
    timers, each handed to its step of the core (engine/handler.py), the profile, identity
    and timer tables, and the web views.

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
        fetch_size=FetchSize(settings.fetch_min_bytes, settings.fetch_gather_ms),
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
        producer_max_batch_size=OUTPUT_BATCH_BYTES,
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
    app.owned_topics = frozenset(
        [spec.name for spec in topic_catalogue(settings.topic_prefix)]
        + [topic.get_topic_name() for topic in (identity, stitched, nudges)]
        + [table.changelog_topic.get_topic_name() for table in (profiles, identities, timers)]
    )
    metrics = Metrics()
    metrics.fetch_min_bytes.set_function(lambda: app.fetch_size.value)
    policy = model.policy if model is not None else fresh_policy(settings)
    core = build_core(settings, policy)
    model_store.install(app, settings, policy, metrics, model)

    journeys = Journeys(metrics, catalogue or initial_catalogue(settings))
    index = TimerIndex()
    clock = SystemClock()

    outbox = Outbox(lambda: cast(Any, app.producer)._ensure_producer())
    app.before_flush.append(outbox.flush)
    # Table writes send their changelog records through the outbox (engine/changelog.py).
    tables = Tables(*(ChangelogTable(t, outbox) for t in (profiles, identities, timers)))
    steps: dict[str, Step] = {topic: core.ingest for topic in names.inputs}
    steps |= {identity.get_topic_name(): core.link, stitched.get_topic_name(): core.stitched}
    steps[nudges.get_topic_name()] = core.tick
    # The consumer hands these topics' records to the handler itself (engine/delivery.py);
    # listed with Faust's conductor, they are subscribed and assigned like an agent's.
    for topic in (inputs, identity, stitched, nudges):
        app.topics.add(topic)
    handler = Handler(
        steps,
        tables,
        outbox,
        metrics,
        names,
        index,
        catalogue=lambda: journeys.current,
        cache_size=settings.profile_cache_size,
        write_delay_seconds=settings.profile_write_delay_ms / 1000,
    )
    app.receiver = handler
    metrics.profiles_unwritten.set_function(lambda: handler.cache.unwritten)

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

    if settings.profile_write_delay_ms:
        # Between deliveries too: an idle worker's last changes are written, and its
        # commits reach the last record delivered (engine/profile_cache.py).
        every = min(1.0, max(0.1, settings.profile_write_delay_ms / 2000))

        @app.timer(interval=every, name="segue.profile-writes")  # type: ignore[untyped-decorator]
        async def write_profiles() -> None:
            if handler.write_due():
                outbox.flush_soon()

    @app.task  # type: ignore[untyped-decorator]
    async def follow_catalogue() -> None:
        await journeys.follow(settings)

    observe.install(
        app,
        metrics,
        {PROFILE_TABLE: profiles, IDENTITY_TABLE: identities, TIMER_TABLE: timers},
        count_keys=settings.table_store.startswith("memory://"),
        consumed=handler.topics,
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
    """Raw bytes in and out: the core validates, so Faust decodes (and drops) nothing.

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
        go on with the catalogue at hand and try again. (Delivery never waits for this: a
        worker that does not consume at start can stall its group's rebalance.)"""
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
