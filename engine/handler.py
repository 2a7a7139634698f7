"""The worker's work per record: the core's step, then its result into the tables and
the outbox.

The consumer hands over the records of the worker's topics a few at a time
(engine/delivery.py); each goes to its topic's step of the functional core
(engine/pipeline.py) and what the step returns is carried out at once: profile, identity
and timer writes to the tables (engine/changelog.py), sends to the outbox
(engine/outbox.py), the result to the metrics. Nothing here awaits, so the records of a
partition never interleave, and no exception from the core escapes: an unexpected one
dead-letters its record with ``internal_error``, so it is never dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from faust.types import TP

from engine.changelog import ChangelogTable
from engine.journeys import Catalogue
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.pipeline import Result, reject
from engine.profile import Profile
from engine.records import Record
from engine.result_metrics import observe_result
from engine.timers import TimerIndex, encode_wake
from topics.catalogue import TopicNames
from topics.events import Rejection

Step = Callable[..., Result]
"""One of Core.ingest, Core.link, Core.stitched, Core.tick:
(record, state, now_ms=...) -> Result."""

log = logging.getLogger("segue.worker")


class Tables:
    """The worker's three changelog-backed tables."""

    def __init__(
        self, profiles: ChangelogTable, identities: ChangelogTable, timers: ChangelogTable
    ) -> None:
        self.profiles = profiles
        self.identities = identities
        self.timers = timers

    def write_staged(self) -> None:
        """Into RocksDB with what a slice of records wrote (engine/changelog.py)."""
        self.profiles.write_staged()
        self.identities.write_staged()
        self.timers.write_staged()


class ProfileCache:
    """The decoded profiles of the customers seen last (at most ``size``), by key.

    Decoding a profile's stored bytes costs ~20 µs of a ~400 µs decision point. The core
    never changes a profile it was given (it builds a new one per event), so the object
    it returned is as good as its bytes decoded again: benchmarks/core_golden.py gives
    the same digest with profiles kept as objects as with profiles decoded each time
    (tests/unit/test_handler.py). Cleared whenever the worker's partitions change, since
    a partition may come back after another worker changed its customers."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Profile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Profile | None:
        profile = self._items.get(key)
        if profile is not None:
            self._items.move_to_end(key)
        return profile

    def put(self, key: str, profile: Profile) -> None:
        if self._size:
            self._items[key] = profile
            self._items.move_to_end(key)
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class PartitionState:
    """What the core reads of the tables (engine/pipeline.py's ``State``), for the
    records of one partition: every table is co-partitioned with the topics, so a
    record's keys live in its own partition of each table."""

    def __init__(
        self,
        tables: Tables,
        partition: int,
        catalogue: Callable[[], Catalogue],
        cache: ProfileCache,
    ) -> None:
        self._tables = tables
        self._partition = partition
        self._catalogue = catalogue
        self._cache = cache

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue()

    def profile(self, key: str) -> Profile | None:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        stored = self._tables.profiles.get(key.encode(), self._partition)
        if stored is None:
            return None
        profile = Profile.decode(stored)
        self._cache.put(key, profile)
        return profile

    def linked(self, anonymous_id: str) -> str | None:
        stored = self._tables.identities.get(anonymous_id.encode(), self._partition)
        return stored.decode() if stored is not None else None


class Handler:
    """The consumer's receiver of the worker's topics (engine/delivery.py)."""

    def __init__(
        self,
        steps: Mapping[str, Step],
        tables: Tables,
        outbox: Outbox,
        metrics: Metrics,
        names: TopicNames,
        timer_index: TimerIndex,
        catalogue: Callable[[], Catalogue],
        cache_size: int,
    ) -> None:
        self.topics = frozenset(steps)
        self._steps = steps
        self._tables = tables
        self._outbox = outbox
        self._metrics = metrics
        self._names = names
        self._index = timer_index
        self._catalogue = catalogue
        self._states: dict[int, PartitionState] = {}
        self.cache = ProfileCache(cache_size)

    def deliver(self, tp: TP, records: Sequence[Any]) -> None:
        step = self._steps[tp.topic]
        for r in records:
            self.handle(step, Record(r.topic, r.partition, r.offset, r.key, r.value, [*r.headers]))
        self._tables.write_staged()

    async def delivered(self) -> None:
        # Flushing in its own task, the outbox takes what arrives meanwhile; the consumer
        # waits for it only when the broker is not keeping up.
        if self._outbox.full():
            await self._outbox.flush()
        else:
            self._outbox.flush_soon()

    def forget(self) -> None:
        self.cache.clear()

    def handle(self, step: Step, rec: Record) -> None:
        started = time.perf_counter()
        now_ms = time.time_ns() // 1_000_000
        part = rec.partition
        state = self._states.get(part)
        if state is None:
            state = PartitionState(self._tables, part, self._catalogue, self.cache)
            self._states[part] = state
        try:
            result = step(rec, state, now_ms=now_ms)
        # Any error in the core is a bug or a bad record we did not foresee: dead-letter
        # the record and go on; raising would stop the worker on one bad record.
        except Exception as exc:
            log.exception("internal error on %s/%d@%d", rec.topic, rec.partition, rec.offset)
            why = Rejection("internal_error", f"{type(exc).__name__}: {exc}")
            result = reject(rec, why, self._names, now_ms=now_ms)
        tables = self._tables
        for key, profile in result.writes.items():
            if profile is None:
                tables.profiles.delete(key.encode(), part)
                self.cache.drop(key)
            else:
                tables.profiles.set(key.encode(), profile.encode(), part)
                self.cache.put(key, profile)
        for anonymous_id, customer_id in result.links.items():
            tables.identities.set(anonymous_id.encode(), customer_id.encode(), part)
        for key, wake in result.timers.items():
            if wake is None:
                tables.timers.delete(key.encode(), part)
            else:
                tables.timers.set(key.encode(), encode_wake(wake), part)
                self._index.note(key, wake)
        # Into the outbox before the consumer counts this record delivered: flushed into
        # the producer before any commit (engine/outbox.py says how order is kept).
        self._outbox.add(result.sends)
        observe_result(self._metrics, self._names, rec, result, started)
