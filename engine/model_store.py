"""The learned model on the compacted model topic: restored at start, published while running.

Each record's key is the app id and the policy name (``segue/uplift-heads``); its value
a snapshot (models/snapshot.py). Compaction keeps the latest per key, so:

1. Before a worker consumes anything (``segue worker``, engine/cli.py), ``restore``
   reads the topic whole, outside the consumer group (engine/compacted.py), and picks
   the newest snapshot of its key that decodes. The core starts with that policy, so a
   restarted worker and a new one alike go on from what was learned, never from zero.
   A snapshot that does not decode (corrupt, another format, other features, a class
   not on the list) is logged and counted, and the next older one still on the topic
   is tried; with none, the worker starts fresh. A tombstone (a null value) for the
   key resets the model: workers that start after it start fresh.
2. While it runs, every ``SEGUE_MODEL_SNAPSHOT_SECONDS`` the worker publishes a
   snapshot if its policy learned since the last one, and once more on a clean
   shutdown (a SIGKILL loses at most that interval of learning).

Several workers of one app publish under the same key and the latest wins: each learns
from the outcomes of its own partitions between snapshots, and a worker that starts
takes the latest snapshot published by any of them. Learning the others did since is
not merged: it is the price of keeping the workers uncoordinated (DESIGN.md).

A snapshot keeps the hyperparameters it was learned with (the learning rate among
them); ``SEGUE_LEARNING_RATE`` shapes only a policy that starts fresh.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import faust

from engine.compacted import CompactedReader
from engine.metrics import Metrics
from engine.settings import Settings
from engine.timers import Clock, SystemClock
from models.snapshot import Header, Learner, SnapshotError, decode, encode
from topics.catalogue import MODEL_MAX_MESSAGE_BYTES, TopicNames

log = logging.getLogger("segue.model")

KEEP = 8
"""Newest snapshots of our key held while reading the topic: the fallbacks when the
latest does not decode. Compaction leaves older ones only until it runs, so more buys
little."""
SHUTDOWN_PUBLISH_SECONDS = 10.0
"""How long a clean shutdown waits for the broker to take the last snapshot."""
CONTENT_TYPE = b"application/vnd.segue.model-snapshot"


def policy_key(settings: Settings, policy_name: str) -> bytes:
    return f"{settings.app_id}/{policy_name}".encode()


@dataclass(frozen=True, slots=True)
class Restored:
    """The policy a worker starts with: learned, or fresh when ``header`` is None."""

    policy: Learner
    header: Header | None
    rejected: tuple[str, ...] = ()
    """Why each newer snapshot of the key was not used, newest first."""


def choose(candidates: Iterable[tuple[str, bytes]], fresh: Learner) -> Restored:
    """The newest snapshot among ``(where, value)`` (oldest first) that decodes to the
    class ``fresh`` is; the reasons the newer ones were refused.

    >>> from models.policy import LogisticHeads
    >>> good = encode(LogisticHeads(), created_at_ms=5)
    >>> r = choose([("m/0@1", good), ("m/0@2", b"not a snapshot")], fresh=LogisticHeads())
    >>> r.header.created_at_ms if r.header else None, r.rejected
    (5, ('m/0@2: not a Segue model snapshot (no SGMS magic)',))
    """
    rejected: list[str] = []
    for where, value in reversed(list(candidates)):
        try:
            snap = decode(value)
            if type(snap.policy) is not type(fresh):
                raise SnapshotError(
                    f"holds a {type(snap.policy).__name__}, this worker runs {type(fresh).__name__}"
                )
        except SnapshotError as err:
            rejected.append(f"{where}: {err}")
            continue
        return Restored(snap.policy, snap.header, tuple(rejected))
    return Restored(fresh, None, tuple(rejected))


async def latest_values(
    settings: Settings, key: bytes | None
) -> dict[bytes, list[tuple[str, bytes]]]:
    """The newest KEEP values (oldest first, with where each was) of each key on the
    model topic, or of ``key`` only."""
    found: dict[bytes, deque[tuple[str, bytes]]] = {}

    def take(rec: Any) -> None:
        if rec.key is None or (key is not None and rec.key != key):
            return
        if rec.value is None:  # a tombstone: an operator reset this model
            found.pop(rec.key, None)
            return
        where = f"{rec.topic}/{rec.partition}@{rec.offset}"
        found.setdefault(rec.key, deque(maxlen=KEEP)).append((where, rec.value))

    topic = TopicNames(settings.topic_prefix).model_snapshots
    reader = CompactedReader(settings, topic, take, what="model")
    try:
        await reader.catch_up()
    finally:
        await reader.stop()
    return {k: list(v) for k, v in found.items()}


async def restore(settings: Settings, fresh: Learner) -> Restored:
    """The policy this worker starts with (see the module docstring). Raises AdminError
    when the topic cannot be read: a worker that started fresh for want of a reachable
    topic would soon publish over what was learned."""
    key = policy_key(settings, fresh.name)
    values = (await latest_values(settings, key)).get(key, [])
    return choose(values, fresh)


class Publisher:
    """Publishes this worker's policy when it learned since the last snapshot."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        policy: Learner,
        metrics: Metrics,
        restored: Restored | None,
        clock: Clock | None = None,
    ) -> None:
        self.policy = policy
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.key = policy_key(settings, policy.name)
        self.topic = app.topic(
            TopicNames(settings.topic_prefix).model_snapshots,
            schema=faust.Schema(
                key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            ),
        )
        header = restored.header if restored is not None else None
        self.published_updates = policy.updates
        """Updates in the snapshot on the topic: nothing to publish until it changes."""
        self.taken_at_ms: int | None = header.created_at_ms if header is not None else None
        self.restored = restored
        self._lock = asyncio.Lock()
        metrics.model_updates.set_function(lambda: float(self.policy.updates))
        metrics.model_snapshot_age.set_function(self._age)
        for _ in restored.rejected if restored is not None else ():
            metrics.model_snapshot_rejected.inc()

    def announce(self) -> None:
        """Log what the worker started from (once the worker's logging is set up: the
        snapshot is read before it is)."""
        key = self.key.decode()
        rejected = self.restored.rejected if self.restored is not None else ()
        for reason in rejected:
            log.error("model snapshot not used: %s", reason)
        header = self.restored.header if self.restored is not None else None
        if header is not None:
            log.info(
                "model %s restored from %s, taken at %d ms",
                header.version,
                key,
                header.created_at_ms,
            )
        elif rejected:
            log.warning("no usable model snapshot for %s: the model starts fresh", key)
        else:
            log.info("no model snapshot for %s: the model starts fresh", key)

    async def publish_if_learned(self) -> bool:
        """Encode on the event loop (a few hundred microseconds, benchmarks/model_snapshot.py),
        then wait for the broker's ack without blocking it. True when one was published."""
        async with self._lock:  # the timer and the shutdown hook never publish at once
            if self.policy.updates == self.published_updates:
                return False
            now_ms = self.clock.now_ms()
            started = time.perf_counter()
            data = encode(self.policy, created_at_ms=now_ms)
            encode_ms = (time.perf_counter() - started) * 1000
            if len(data) > MODEL_MAX_MESSAGE_BYTES:
                log.error(
                    "model snapshot of %d bytes exceeds the model topic's %d; not published",
                    len(data),
                    MODEL_MAX_MESSAGE_BYTES,
                )
                return False
            updates = self.policy.updates
            ack = await self.topic.send(
                key=self.key, value=data, headers=[("content-type", CONTENT_TYPE)]
            )
            await ack
            self.published_updates, self.taken_at_ms = updates, now_ms
            self.metrics.model_snapshots_published.inc()
            log.info(
                "model snapshot %s/%d published (%d bytes, encoded in %.2f ms)",
                self.policy.name,
                updates,
                len(data),
                encode_ms,
            )
            return True

    def _age(self) -> float:
        if self.taken_at_ms is None:
            return math.nan  # no snapshot yet: not zero, which would read as fresh
        return max(0.0, (self.clock.now_ms() - self.taken_at_ms) / 1000)


def install(
    app: faust.App,
    settings: Settings,
    policy: Learner,
    metrics: Metrics,
    restored: Restored | None,
) -> Publisher:
    """Publish ``policy`` every ``model_snapshot_seconds`` and on a clean shutdown."""
    publisher = Publisher(app, settings, policy, metrics, restored)

    @app.task  # type: ignore[untyped-decorator]
    async def announce() -> None:
        publisher.announce()

    @app.timer(interval=settings.model_snapshot_seconds, name="segue.model-snapshot")  # type: ignore[untyped-decorator]
    async def snapshot() -> None:
        try:
            await publisher.publish_if_learned()
        except Exception:  # the next tick tries again; the worker goes on deciding
            log.exception("cannot publish the model snapshot")

    async def last_snapshot(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends this once its consumer stopped and before its producer does: the
        # policy has learned everything it will, and the producer still runs.
        try:
            await asyncio.wait_for(publisher.publish_if_learned(), SHUTDOWN_PUBLISH_SECONDS)
        except Exception:
            log.exception("cannot publish the model snapshot at shutdown")

    # mode types its handlers with mypy_extensions argument kinds mypy does not match here.
    app.on_before_shutdown.connect(cast(Any, last_snapshot))

    return publisher
