"""What a model snapshot costs the worker's event loop: encode and decode time, and size.

A worker encodes its policy on the event loop every SEGUE_MODEL_SNAPSHOT_SECONDS
(engine/model_store.py), so the encode time is a pause every decision in flight sees.
Measured for the default action catalogue's arms and for four times as many (a larger
catalogue), each head taught on every arm with the real feature names.

    .venv/bin/python -m benchmarks.model_snapshot

Writes ``benchmarks/results/model_snapshot-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from benchmarks.results_io import machine, write_result
from engine.actions import arms as nba_arms
from engine.journey_loader import default_actions
from models.features import NAMES
from models.policy import LogisticHeads
from models.snapshot import decode, encode


def taught(arms: list[str], updates: int, seed: int = 1) -> LogisticHeads:
    rng = random.Random(seed)
    policy = LogisticHeads()
    for i in range(updates):
        x = {name: round(rng.random(), 3) for name in NAMES}
        policy.learn_one(x, arms[i % len(arms)], float(rng.random() < 0.2))
    return policy


def timed(fn: Any, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 4),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 4),
        "max_ms": round(samples[-1], 4),
    }


def measure(arms: list[str], updates: int, repeat: int) -> dict[str, Any]:
    policy = taught(arms, updates)
    data = encode(policy, created_at_ms=0)
    return {
        "arms": len(arms),
        "features": len(NAMES),
        "updates": updates,
        "bytes": len(data),
        "encode": timed(lambda: encode(policy, created_at_ms=0), repeat),
        "decode": timed(lambda: decode(data), repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--updates", type=int, default=20_000)
    args = parser.parse_args()
    arms = nba_arms(default_actions())
    larger = [f"{arm}-{k}" for arm in arms for k in range(4)]
    runs = [measure(arms, args.updates, args.repeat), measure(larger, args.updates, args.repeat)]
    write_result("model_snapshot", {"machine": machine(), "repeat": args.repeat, "runs": runs})


if __name__ == "__main__":
    main()
