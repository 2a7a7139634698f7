"""How much data a worker's fetch waits for at the broker, set from the input rate.

The broker answers a fetch once it holds ``fetch_min_bytes`` for it, or when the fetch
wait is over. Each fetch costs the worker about a millisecond of CPU whatever it holds (a
request and a reply naming every partition it reads, taken apart in Python): answering
at the first byte took 67-71% of a core at 1,000 events/s, against 34-44% when a fetch
waited for 4 KiB, some twenty of ``make bench``'s events (benchmarks/README.md, fourth
and fifth passes). A fixed size
suits one rate only: where it takes longer than the fetch wait to arrive, every fetch
waits the whole wait (``make demo``, ~700 small events/s, decided at p50 25 ms with
4 KiB against 9 ms with 1 byte), and at higher rates it answers ever more often.

So the size follows the input: each :data:`WINDOW_SECONDS` the worker measures the bytes
its fetches returned and asks the next fetches for ``gather_ms`` of them. A fetch then
gathers about that long at any steady rate, and a trickle gets a size of one byte, each
event answered as it arrives. Sizes are the records' key and value bytes uncompressed:
the broker counts its stored batches, larger than that by their framing (a fetch
answered a little sooner) or smaller when the producers compress (a little later, never
past the fetch wait). After a drop in the rate, fetches wait out the fetch wait for at
most one window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW_SECONDS = 1.0
"""How often the size is set again, from the bytes fetched since the last time."""

CAP_BYTES = 1_048_576
"""The largest size asked for: far above what arrives within any fetch wait this
worker can take in."""


class FetchSize:
    """The ``fetch_min_bytes`` a worker's next fetch should ask for."""

    def __init__(
        self, floor: int, gather_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if floor < 1:
            raise ValueError(f"floor must be at least 1 byte, not {floor}")
        if gather_ms < 0:
            raise ValueError(f"gather_ms must be 0 or more, not {gather_ms}")
        self.floor = floor
        self.gather_seconds = gather_ms / 1000
        self.value = floor
        self._clock = clock
        self._bytes = 0
        self._since = clock()

    def fetched(self, nbytes: int) -> int:
        """Count ``nbytes`` fetched just now (0 for a fetch that timed out empty); the
        size to ask for from now on."""
        self._bytes += nbytes
        now = self._clock()
        elapsed = now - self._since
        if elapsed >= WINDOW_SECONDS:
            wanted = round(self._bytes / elapsed * self.gather_seconds)
            self.value = max(self.floor, min(CAP_BYTES, wanted))
            self._bytes = 0
            self._since = now
        return self.value
