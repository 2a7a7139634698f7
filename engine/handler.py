"""The worker's work per record: the core's step, then its result into the tables and
the outbox.

The consumer hands over the records of the worker's topics a few at a time
(engine/delivery.py); each goes to its topic's step of the functional core
(engine/pipeline.py) and what the step returns is carried out at once: identity and
timer writes to the tables (engine/changelog.py), profiles into the profile cache, which
writes them to their table within a delay (engine/profile_cache.py), sends to the outbox
(engine/outbox.py), the result to the metrics. Nothing here awaits, so the records of a
partition never interleave, and no exception from the core escapes: an unexpected one
dead-letters its record with ``internal_error``, so it is never dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from faust.types import TP

from engine.changelog import ChangelogTable
from engine.journeys import Catalogue
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.profile import Profile
from engine.profile_cache import ProfileCache
from engine.records import Record
from engine.result import Result, reject
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
        self._cache.keep(key, profile)
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
        write_delay_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
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
        self.cache = ProfileCache(cache_size, self._write_profile, write_delay_seconds, clock)

    def deliver(self, tp: TP, records: Sequence[Any]) -> None:
        step = self._steps[tp.topic]
        self.cache.delivering(tp, records[0].offset)
        for r in records:
            self.handle(step, Record(r.topic, r.partition, r.offset, r.key, r.value, [*r.headers]))
        self.cache.write_due()
        self._tables.write_staged()

    def held(self, tp: TP) -> int | None:
        """The offset of ``tp`` a commit must not pass: its records from there changed
        profiles not yet written (engine/profile_cache.py)."""
        return self.cache.held(tp)

    def write_due(self) -> int:
        """Write the profiles whose delay is over (how many), their changelog records
        into the outbox; between deliveries, on a timer, so an idle worker's changes are
        written and its commits move on too."""
        written = self.cache.write_due()
        if written:
            self._tables.write_staged()
        return written

    async def delivered(self) -> None:
        # Flushing in its own task, the outbox takes what arrives meanwhile; the consumer
        # waits for it only when the broker is not keeping up.
        if self._outbox.full():
            await self._outbox.flush()
        else:
            self._outbox.flush_soon()

    def forget(self) -> None:
        # Changes not yet written go to the tables first: the commit that follows (on a
        # rebalance, or when the worker stops) covers every record delivered.
        self.cache.write_all()
        self._tables.write_staged()
        self.cache.clear()

    def _write_profile(self, key: str, partition: int, profile: Profile) -> None:
        self._tables.profiles.set(key.encode(), profile.encode(), partition)

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
                self.cache.put(key, part, profile)  # written now, or within the delay
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
