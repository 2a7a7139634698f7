"""Scenario: 2,000 simulated customers act on a worker on the real broker for a minute;
a responder reads every decision from the decision log and answers it as the customer
would (models/simulator.py: clicks, purchases, dismissals, silence), on a clock 600 times
faster, with a 15 s attribution window. We expect the worker to learn only from what it
attributes, and its marketing decisions of the second half to convert better than a
random policy's would on the same eligible candidates: a one-sided z-test on the
per-decision difference of true conversion probabilities (chosen arm minus the mean of
the eligible arms), over thousands of decisions, not one lucky draw.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import engine.localkafka as localkafka
from engine.actions import TRIGGERS
from models.simulator import Population
from tests.harness import Segue, start_segue

pytestmark = pytest.mark.integration

CUSTOMERS = 2000
RATE = 150.0
"""Simulated activities per second (one or two events each)."""
SECONDS = 60.0
TIME_SCALE = 1 / 600
WINDOW_SECONDS = 15
Z_MIN = 4.0


async def run_loop(segue: Segue, pop: Population) -> list[tuple[float, float, float]]:
    """(seconds into the run, chosen p, random-policy p) per marketing decision."""
    names = segue.names
    bootstrap = segue.settings.kafka_bootstrap
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(
        names.decision_log,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    seen: list[tuple[float, float, float]] = []
    triggers = decided = 0
    started = time.monotonic()

    async def send(ev: dict[str, Any]) -> None:
        source = ev.pop("source")
        who = ev.get("customer_id") or ev["anonymous_id"]
        await producer.send(names.source(source), value=orjson.dumps(ev), key=who.encode())

    async def respond() -> None:
        nonlocal decided
        async for msg in consumer:
            d = orjson.loads(msg.value or b"{}")
            if not d["customer_id"].startswith("sim-"):
                continue  # the harness's warm-up
            if not d.get("journey"):
                decided += 1
            if d["action"] == "none":
                continue
            pop.answer(d, time.time_ns() // 1_000_000)
            expected = None if d.get("journey") else pop.expected(d)
            if expected is not None:
                seen.append((time.monotonic() - started, expected[0], expected[1]))

    responder = asyncio.create_task(respond())
    try:
        done = 0
        while (elapsed := time.monotonic() - started) < SECONDS:
            now_ms = time.time_ns() // 1_000_000
            for ev in pop.due(now_ms):
                await send(ev)
            for _ in range(int(elapsed * RATE) - done):
                done += 1
                for ev in pop.activity(now_ms):
                    triggers += "customer_id" in ev and f"{ev['source']}.{ev['type']}" in TRIGGERS
                    await send(ev)
            await asyncio.sleep(0.02)
        await producer.flush()
        # Drain: until the worker has caught up and the log stays quiet for 3 s.
        deadline, last = time.monotonic() + 45, -1
        while (decided < triggers or decided != last) and time.monotonic() < deadline:
            last = decided
            await asyncio.sleep(3)
    finally:
        responder.cancel()
        await asyncio.gather(responder, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return seen


def test_the_learned_policy_beats_random_on_the_same_decisions(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    segue = start_segue(kafka, tmp_path, attribution_window_seconds=WINDOW_SECONDS)
    try:
        pop = Population(CUSTOMERS, seed=21, anonymous_share=0.3, time_scale=TIME_SCALE)
        seen = asyncio.run(run_loop(segue, pop))
        lessons = segue.metric("segue_model_lessons_total")
        revenue = segue.metric("segue_attributed_revenue_total")
    finally:
        segue.worker.stop()

    # It learned from what it attributed, purchases included.
    assert lessons > 1000 and revenue > 0
    later = [chosen - rand for at, chosen, rand in seen if at >= SECONDS / 2]
    assert len(later) > 2000
    mean = statistics.fmean(later)
    z = mean / (statistics.stdev(later) / math.sqrt(len(later)))
    print(f"{len(seen)} marketing decisions; later {len(later)}: mean {mean:.4f}, z {z:.1f}")
    assert z > Z_MIN, f"mean uplift over random {mean:.4f} on {len(later)} decisions, z {z:.1f}"
