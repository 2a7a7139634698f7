"""Process and machine CPU and memory from /proc, for the benchmarks' JSON results."""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from engine.admin import AdminError
from engine.localkafka import LocalKafkaError

CLK_TCK = os.sysconf("SC_CLK_TCK")

Measured = dict[str, Any]
"""What one side measured: rate, wall time, CPU, memory, the broker's CPU."""


class BenchError(Exception):
    """The run cannot go on; the reason in one line (plus the worker's log tail)."""


CANNOT_RUN = (BenchError, LocalKafkaError, AdminError)
"""What stops a benchmark with its one-line reason rather than a traceback: the run's own
failures, the local broker's, and a broker that cannot be reached (``--bootstrap``)."""


OTHER_SOURCE_MIN_PERCENT = 0.5
"""A process outside the measured ones is named in ``other_cpu_by_source`` from this % of a core."""


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks."""
    return _ticks(_fields(Path(f"/proc/{pid}/stat").read_text()))


def _fields(stat: str) -> list[str]:
    """A ``/proc/<pid>/stat`` line's fields after the name (which may hold spaces)."""
    return stat[stat.rindex(")") + 2 :].split()


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def core_percent(ticks: int, wall: float) -> float:
    """``ticks`` of CPU over ``wall`` seconds, in % of one core."""
    return round(ticks / CLK_TCK / wall * 100, 1)


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def broker_ticks(pids: Sequence[int]) -> int | None:
    if not pids:
        return None
    try:
        return sum(cpu_ticks(pid) for pid in pids)
    except OSError:
        return None


class Process(NamedTuple):
    name: str
    """The kernel's name for it (a kernel worker's changes with the work it does)."""
    started: int
    """Clock ticks after boot: a pid used again is a new process."""
    ticks: int
    """utime + stime of all its threads."""


@dataclass(frozen=True, slots=True)
class MachineTicks:
    """The machine's CPU ticks at one moment: in all, by kind, and each process's."""

    busy: int
    """All cores' time on anything but idling (the hypervisor's steal included)."""
    steal: int
    """Time our virtual CPUs were ready to run but the hypervisor ran another guest."""
    interrupts: int
    """The kernel's irq and softirq time (a kernel without ``CONFIG_IRQ_TIME_ACCOUNTING``,
    as on the machine of benchmarks/README.md, also charges it to the process it
    interrupted)."""
    processes: dict[int, Process]
    """Every process alive at that moment, by pid."""

    @classmethod
    def take(cls) -> MachineTicks:
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        ticks = [int(t) for t in Path("/proc/stat").read_text().split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]
        return cls(busy, ticks[7], ticks[5] + ticks[6], process_ticks())


def process_ticks() -> dict[int, Process]:
    """Every live process's CPU ticks; one that exits while it is read is left out."""
    found: dict[int, Process] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = _fields(stat)
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[int(entry.name)] = Process(name, int(fields[19]), _ticks(fields))
    return found


def other_cpu(
    a: MachineTicks, b: MachineTicks, *, measured: int, pids: Collection[int], wall: float
) -> dict[str, Any]:
    """What the machine spent beside the ``measured`` ticks of ``pids``, and on what.

    ``other_cpu_percent`` (% of one core) is the machine's busy time less ``measured``:
    high means the numbers are disturbed. ``other_cpu_by_source`` says where it went:
    ``steal`` (the hypervisor ran another guest), ``interrupts`` (the kernel's irq and
    softirq time, loopback networking among it), each other process from
    :data:`OTHER_SOURCE_MIN_PERCENT` by pid and command line, and ``unaccounted``: what
    processes that exited within the window used, and the smaller ones together.

    ``steal`` and ``interrupts`` come from ``/proc/stat``'s ticks, a process's time from
    its scheduler clock: an interrupt also counts in the time of the process it
    interrupted, measured ones among them, and the two clocks differ, so the sources can
    add up to more than ``other_cpu_percent``.
    """
    other = max(0, b.busy - a.busy - measured)
    named: dict[str, int] = {
        "steal": b.steal - a.steal,
        "interrupts": b.interrupts - a.interrupts,
    }
    for pid, now in b.processes.items():
        if pid in pids:
            continue
        before = a.processes.get(pid)
        used = now.ticks - (before.ticks if before and before.started == now.started else 0)
        if core_percent(used, wall) >= OTHER_SOURCE_MIN_PERCENT:
            named[f"{pid} {command_line(pid, now.name)}"] = used
    named["unaccounted"] = max(0, other - sum(named.values()))
    return {
        "other_cpu_percent": core_percent(other, wall),
        "other_cpu_by_source": {
            source: core_percent(ticks, wall)
            for source, ticks in sorted(named.items(), key=lambda kv: -kv[1])
        },
    }


def command_line(pid: int, name: str, limit: int = 80) -> str:
    """The process's command line, cut to ``limit`` characters; its name once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return name
    line = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return (line or name)[:limit]


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    ticks: int
    broker: int | None
    machine: MachineTicks
    pids: tuple[int, ...]
    """The path's pid, the load processes' and the broker's."""
    load: int = 0
    """The load processes' ticks (a load generator and its consumer), if any."""

    @classmethod
    def take(cls, pid: int, brokers: Sequence[int], load: Sequence[int] = ()) -> Snapshot:
        return cls(
            time.monotonic(),
            cpu_ticks(pid),
            broker_ticks(brokers),
            MachineTicks.take(),
            (pid, *load, *brokers),
            sum(cpu_ticks(p) for p in load),
        )

    def others(self, end: Snapshot) -> dict[str, Any]:
        """:func:`other_cpu` between this snapshot and ``end``: beside the path, the load
        processes and the broker."""
        measured = end.ticks - self.ticks + end.load - self.load
        if self.broker is not None and end.broker is not None:
            measured += end.broker - self.broker
        wall = end.wall - self.wall
        return other_cpu(self.machine, end.machine, measured=measured, pids=self.pids, wall=wall)

    def broker_percent(self, end: Snapshot) -> float | None:
        if self.broker is None or end.broker is None:
            return None
        return core_percent(end.broker - self.broker, end.wall - self.wall)


def window(start: Snapshot, end: Snapshot, pid: int, events: int) -> Measured:
    """The measured block of one side: rate, CPU and memory between two snapshots.

    ``other_cpu_percent`` is what the rest of the machine used meanwhile (the broker
    included when its pid is unknown), and ``other_cpu_by_source`` on what
    (:func:`other_cpu`): high means the numbers are disturbed.
    """
    wall = end.wall - start.wall
    cpu = (end.ticks - start.ticks) / CLK_TCK
    return {
        "events_per_second": round(events / wall, 1),
        "wall_seconds": round(wall, 3),
        "events_in_window": events,
        "cpu_percent_of_one_core": core_percent(end.ticks - start.ticks, wall),
        "cpu_microseconds_per_event": round(cpu / events * 1e6, 1),
        "peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
        "broker_cpu_percent": start.broker_percent(end),
        **start.others(end),
    }
