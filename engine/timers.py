"""When each customer's next journey timer is due, and the clock that decides it is due.

The durable truth is the worker's ``timers`` table (customer -> next wake time), written
in the same step as the profile whose journeys set the timer, so it is recovered from
its changelog with everything else. ``TimerIndex`` is only a cache of that table in wake
order, so the worker finds due timers without scanning every customer each second:

1. A write to the table is noted in the index (``note``).
2. After every table recovery (start, rebalance) the index is rebuilt from the table
   (``rebuild``): whatever a crash lost from memory is back.
3. Each tick, ``due(now)`` pops every entry at or before ``now`` whose wake the table
   still holds (a later write makes an older entry stale) and whose partition this
   worker owns. The worker sends each a nudge through its timer topic; the nudge is
   processed on the customer's partition like any event, in order with their events.

A popped entry is not pushed back: the nudge's own table write notes the next wake. If
the nudge is lost in a crash, the rebuild after the restart finds the wake in the table
again, so a due timer is never forgotten; a nudge sent twice is harmless, because the
core fires only timers that are still due.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time: what decides, in production, that a timer is due."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class TimerIndex:
    """Due timers in wake order; see the module docstring for the protocol.

    >>> index = TimerIndex()
    >>> index.note("c1", 2_000); index.note("c2", 1_000); index.note("c1", 3_000)
    >>> wakes = {"c1": 3_000, "c2": 1_000}
    >>> index.due(2_500, wakes.get, lambda key: True)
    ['c2']
    >>> index.due(5_000, wakes.get, lambda key: True)
    ['c1']
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def note(self, key: str, wake_ms: int | None) -> None:
        if wake_ms is not None:
            heapq.heappush(self._heap, (wake_ms, key))

    def rebuild(self, entries: Iterable[tuple[str, int]]) -> None:
        self._heap = [(wake, key) for key, wake in entries]
        heapq.heapify(self._heap)

    def due(
        self,
        now_ms: int,
        stored: Callable[[str], int | None],
        owned: Callable[[str], bool],
    ) -> list[str]:
        """Keys with a timer due at ``now_ms``: each popped once, oldest first.

        ``stored(key)`` is the wake the table holds now; ``owned(key)`` whether this
        worker processes the key's partition (another worker fires the others)."""
        keys: dict[str, None] = {}  # ordered, and a key noted twice is nudged once
        while self._heap and self._heap[0][0] <= now_ms:
            wake, key = heapq.heappop(self._heap)
            if key not in keys and stored(key) == wake and owned(key):
                keys[key] = None
        return list(keys)


def encode_wake(wake_ms: int) -> bytes:
    return str(wake_ms).encode()


def decode_wake(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None else None
