"""The decoded profiles of recent customers, kept in memory and written to their table late.

**Kept.** Decoding a profile's stored bytes costs ~20 µs of a ~400 µs decision point.
The core never changes a profile it was given (it builds a new one per event), so the
object it returned is as good as its bytes decoded again: benchmarks/core_golden.py
gives the same digest with profiles kept as objects as with profiles decoded each time
(tests/unit/test_handler.py). At most ``size`` are kept, the most recently used.

**Written late.** Every event changes its customer's profile, and writing it was about
a seventh of a deciding worker's CPU: the profile encoded, put into RocksDB, and its
changelog record produced (and the broker's share of storing it). A customer's events
come in bursts, so a changed profile is written ``delay`` after its first change since
it was last written: what changed meanwhile goes out as one write, the last version, as
Kafka Streams' record cache does between commits. Sooner when the profile
is dropped from memory (the least recently used beyond ``size``), and every one when
the worker's partitions change or it stops (``write_all``).

**Commits never pass a change not written.** ``held(tp)`` is the offset of the first
record of ``tp`` delivered since the oldest change still in memory; the consumer commits
no further than it (engine/delivery.py). After a crash the records from there are read
again onto the profiles as last written, and the replay rule (engine/pipeline.py) makes
that harmless, as for any record delivered and not yet committed. So commits lag the
delivered records by about ``delay`` on a busy worker; the written profiles never lag
the committed offsets.

A change leaves memory only once its write returned: a write that fails (the store)
leaves it unwritten, and the commits held back by it.

A deleted profile is deleted from the table at once, and its unwritten change dropped:
the one step that deletes one (stitching an anonymous customer to a known one,
engine/pipeline.py) sends the whole profile on to the known customer's partition in the
same result, and that send is in Kafka before any commit past it (engine/outbox.py).

With ``delay`` 0, or ``size`` 0 (nothing kept), every profile is written as it changes.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import NamedTuple

from faust.types import TP

from engine.profile import Profile

Write = Callable[[str, int, Profile], None]
"""Writes (key, partition, profile) to the profile table: its store and changelog."""


class _Unwritten(NamedTuple):
    partition: int
    delivery: int
    """The number of the delivery (``delivering``) that first changed it."""
    since: float
    """When it first changed since it was last written (the cache's clock)."""


class ProfileCache:
    """The most recently used decoded profiles, by key; changed ones written late."""

    def __init__(
        self,
        size: int,
        write: Write,
        delay_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0 or delay_seconds < 0:
            raise ValueError(f"size and delay must be 0 or more, not {size}, {delay_seconds}")
        self._size = size
        self._write = write
        self._delay = delay_seconds if size else 0.0
        self._clock = clock
        self._items: OrderedDict[str, Profile] = OrderedDict()
        self._unwritten: OrderedDict[str, _Unwritten] = OrderedDict()
        """Changed and not yet written, in the order of their first change."""
        self._deliveries: deque[tuple[int, TP, int]] = deque()
        """(number, topic-partition, first offset) of each delivery since the one that
        made the oldest unwritten change."""
        self._delivery = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def unwritten(self) -> int:
        """Profiles changed in memory and not yet written."""
        return len(self._unwritten)

    def get(self, key: str) -> Profile | None:
        profile = self._items.get(key)
        if profile is not None:
            self._items.move_to_end(key)
        return profile

    def keep(self, key: str, profile: Profile) -> None:
        """Keep ``profile``, just decoded from the table: nothing to write."""
        if self._size:
            self._remember(key, profile)

    def put(self, key: str, partition: int, profile: Profile) -> None:
        """``profile`` is the customer's new one: write it, now or within the delay."""
        if not self._delay:
            self._write(key, partition, profile)
            self.keep(key, profile)
            return
        if key not in self._unwritten:
            self._unwritten[key] = _Unwritten(partition, self._delivery, self._clock())
        self._remember(key, profile)

    def drop(self, key: str) -> None:
        """Forget ``key``, unwritten change included: the caller deleted it from the table."""
        self._items.pop(key, None)
        self._unwritten.pop(key, None)

    def delivering(self, tp: TP, offset: int) -> None:
        """The records of ``tp`` from ``offset`` on are being delivered: what they change
        holds back the commit of ``tp`` until it is written."""
        if self._delay:
            self._delivery += 1
            self._deliveries.append((self._delivery, tp, offset))

    def write_due(self) -> int:
        """Write the profiles changed at least the delay ago; how many."""
        return self._write_first_changed(self._clock() - self._delay)

    def write_all(self) -> int:
        """Write every changed profile; how many."""
        return self._write_first_changed(math.inf)

    def held(self, tp: TP) -> int | None:
        """The offset of ``tp`` a commit must not pass (None: nothing holds it back)."""
        if not self._unwritten:
            return None
        oldest = self._oldest_delivery()
        for number, delivered, offset in self._deliveries:
            if number >= oldest and delivered == tp:
                return offset
        return None

    def clear(self) -> None:
        """Forget everything kept: ``write_all`` first, or the changes are lost."""
        self._items.clear()
        self._unwritten.clear()
        self._deliveries.clear()

    def _remember(self, key: str, profile: Profile) -> None:
        """Keep ``profile`` as the most recently used; the least recently used beyond
        ``size`` goes, written first if its change is not yet."""
        self._items[key] = profile
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            evicted = next(iter(self._items))
            first = self._unwritten.get(evicted)
            if first is not None:
                self._write(evicted, first.partition, self._items[evicted])
                del self._unwritten[evicted]
            del self._items[evicted]

    def _write_first_changed(self, until: float) -> int:
        """Write the profiles first changed no later than ``until``, oldest first; and
        forget the deliveries no longer holding any commit back."""
        unwritten = self._unwritten
        written = 0
        while unwritten:
            key, first = next(iter(unwritten.items()))
            if first.since > until:
                break
            self._write(key, first.partition, self._items[key])
            del unwritten[key]
            written += 1
        self._forget_deliveries()
        return written

    def _forget_deliveries(self) -> None:
        if not self._unwritten:
            self._deliveries.clear()
            return
        oldest = self._oldest_delivery()
        while self._deliveries and self._deliveries[0][0] < oldest:
            self._deliveries.popleft()

    def _oldest_delivery(self) -> int:
        """The number of the delivery that made the oldest unwritten change (some are)."""
        return next(iter(self._unwritten.values())).delivery
