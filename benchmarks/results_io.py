"""Where and how every benchmark records what it measured."""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("faust-streaming", "aiokafka", "river", "orjson")


SPEED_ROUNDS = 10
SPEED_DOC = {
    "customer_id": "c-000123",
    "type": "product_view",
    "time": 1_800_000_000_000,
    "properties": {"sku": "sku-42", "price": 19.9, "category": "shoes", "tags": ["a", "b"]},
}


def machine(**extra: Any) -> dict[str, Any]:
    """The machine and the versions a result was measured with, and how fast it was."""
    return {
        "python": sys.version.split()[0],
        "python_executable": os.path.realpath(sys.executable),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpuinfo("model name"),
        "cpus": os.cpu_count(),
        **{name: version(name) for name in PACKAGES},
        "speed_index_ms": speed_index_ms(),
        **extra,
    }


def speed_index_ms() -> float:
    """Milliseconds, the best of a few rounds, for one fixed piece of Python work.

    The same virtual machine type has run the same drain at 131 to 302 µs per event on
    different days: this puts a number on the machine itself, next to what a run
    measured. The work is like an event's, none of it the project's code (which changes):
    an orjson round trip of a small event, a dict update and an f-string, 20,000 times.
    Lower is faster; compare runs by it before comparing their rates, with the same
    interpreter (``python_executable``): it measures the interpreter as much as the
    machine (28-30 ms with Debian's 3.11, 35-39 with a pyenv build, one machine). It is
    the best of its rounds, and still moves: on one idle machine, with the pyenv build,
    33-36 ms most times and 43-61 ms in one try in six, the host's other work slowing
    our virtual CPUs for seconds without any steal time to show for it.
    """
    best = float("inf")
    for _ in range(SPEED_ROUNDS):
        started = time.perf_counter()
        counts: dict[str, int] = {}
        for i in range(20_000):
            doc = orjson.loads(orjson.dumps(SPEED_DOC))
            key = f"{doc['customer_id']}:{doc['type']}:{i % 97}"
            counts[key] = counts.get(key, 0) + len(doc["properties"]["tags"])
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _cpuinfo(field: str) -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return None


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Stamp ``result``, write it to ``results/<name>-<UTC time>.json`` and print it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result["measured_at"] = stamp
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{stamp}.json"
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    out.write_bytes(text)
    print(text.decode())
    print(f"written to {out}")
    return out
