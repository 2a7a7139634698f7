"""Process and machine CPU and memory from /proc, for the benchmarks' JSON results."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

Measured = dict[str, float | int | None]
"""What one side measured: rate, wall time, CPU, memory, the broker's CPU."""


class BenchError(Exception):
    """The run cannot go on; the reason in one line (plus the worker's log tail)."""


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return int(fields[11]) + int(fields[12])


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def busy_ticks() -> int:
    """CPU time all cores spent on anything but idling, in clock ticks."""
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    ticks = [int(t) for t in Path("/proc/stat").read_text().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4]


def broker_ticks(pids: Sequence[int]) -> int | None:
    if not pids:
        return None
    try:
        return sum(cpu_ticks(pid) for pid in pids)
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    ticks: int
    broker: int | None
    machine: int

    @classmethod
    def take(cls, pid: int, brokers: Sequence[int]) -> Snapshot:
        return cls(time.monotonic(), cpu_ticks(pid), broker_ticks(brokers), busy_ticks())


def window(start: Snapshot, end: Snapshot, pid: int, events: int) -> Measured:
    """The measured block of one side: rate, CPU and memory between two snapshots.

    ``other_cpu_percent`` is what the rest of the machine used meanwhile (the broker
    included when its pid is unknown): high means the numbers are disturbed.
    """
    wall = end.wall - start.wall
    cpu = (end.ticks - start.ticks) / CLK_TCK
    broker = None
    other = end.machine - start.machine - (end.ticks - start.ticks)
    if start.broker is not None and end.broker is not None:
        broker = round((end.broker - start.broker) / CLK_TCK / wall * 100, 1)
        other -= end.broker - start.broker
    return {
        "events_per_second": round(events / wall, 1),
        "wall_seconds": round(wall, 3),
        "events_in_window": events,
        "cpu_percent_of_one_core": round(cpu / wall * 100, 1),
        "cpu_microseconds_per_event": round(cpu / events * 1e6, 1),
        "peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
        "broker_cpu_percent": broker,
        "other_cpu_percent": round(max(0, other) / CLK_TCK / wall * 100, 1),
    }
