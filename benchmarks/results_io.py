"""Where and how every benchmark records what it measured."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("faust-streaming", "aiokafka", "river", "orjson")


def machine(**extra: Any) -> dict[str, Any]:
    """The machine and the versions a result was measured with."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        **{name: version(name) for name in PACKAGES},
        **extra,
    }


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
