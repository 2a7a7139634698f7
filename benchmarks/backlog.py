"""A consumer draining a preloaded backlog, followed from outside by a count it exposes.

Shared by every benchmark that measures events/s at saturation: the Segue worker (its
``segue_events_consumed_total``) and the raw aiokafka loop (a shared counter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from benchmarks.procstats import BenchError, Measured, Snapshot, window

POLL_SECONDS = 0.1
"""How often ``count()`` is asked by default: a shared counter costs nothing to read."""
PROGRESS_SECONDS = 3.0
START_SECONDS = 120.0
"""How long a consumer may take to see its first record (group join, Faust start-up)."""
STALL_SECONDS = 60.0
"""Give up when no new record is consumed for this long: the consumer is stuck or dead."""


def say(line: str) -> None:
    print(line, flush=True)


def drain(
    label: str,
    pid: int,
    events: int,
    brokers: Sequence[int],
    count: Callable[[], float],
    check: Callable[[], str | None],
    launched: float,
    poll_seconds: float = POLL_SECONDS,
) -> Measured:
    """Poll ``count()`` every ``poll_seconds`` until it reaches ``events``.

    Measured from the first poll that sees an event to the one that sees all of them, plus
    the steady rate between 10% and 90% of them and the start-up time from ``launched``
    (a ``time.monotonic()``). ``check()`` returns why the process is gone, or None.
    """
    first: Snapshot | None = None
    count0 = seen = 0.0
    progress = (launched, 0.0)
    samples: list[tuple[float, float]] = []
    while seen < events:
        gone = check()
        if gone is not None:
            raise BenchError(f"{label}: {gone}")
        current = count()
        now = time.monotonic()
        if current > seen:
            if first is None:
                first, count0 = Snapshot.take(pid, brokers), current
                progress = (first.wall, current)
                say(f"  {label} consuming {now - launched:.1f} s after its start")
            seen = current
            samples.append((now, current))
        quiet_since = samples[-1][0] if samples else launched
        limit = STALL_SECONDS if samples else START_SECONDS
        if now - quiet_since > limit:
            raise BenchError(f"{label} consumed nothing new for {limit:.0f} s (at {seen:,.0f})")
        if first is not None and now - progress[0] >= PROGRESS_SECONDS:
            rate = (seen - progress[1]) / (now - progress[0])
            say(f"  {label:<8} {seen:>9,.0f} / {events:,} events  {rate:>9,.0f}/s")
            progress = (now, seen)
        time.sleep(max(0.0, poll_seconds - (time.monotonic() - now)))
    assert first is not None
    end = Snapshot.take(pid, brokers)
    result = window(first, end, pid, int(seen - count0))
    result["startup_seconds"] = round(first.wall - launched, 2)
    result["steady_events_per_second"] = steady_rate(samples, events)
    return result


def steady_rate(samples: Sequence[tuple[float, float]], events: int) -> float | None:
    """The rate between 10% and 90% of the events, without start-up and drain.

    >>> steady_rate([(0.0, 0), (1.0, 100), (2.0, 500), (3.0, 900), (4.0, 1000)], 1000)
    400.0
    """
    low = next((s for s in samples if s[1] >= events * 0.1), None)
    high = next((s for s in samples if s[1] >= events * 0.9), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return round((high[1] - low[1]) / (high[0] - low[0]), 1)
