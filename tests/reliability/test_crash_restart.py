"""Scenario: the worker is killed with SIGKILL while events stream in, then restarted.

We expect no event to be lost (every decision point has a decision on the log) and none
to be applied twice: each decision's features count exactly the web events its customer
had sent up to and including that event, even for events replayed after the restart.
Re-emitted decisions carry the same decision id, so consumers can drop the duplicates.
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

import engine.localkafka as localkafka
from tests.harness import Segue, event, start_segue, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CUSTOMERS = 150
EVENTS_EACH = 30


def produce_stream(segue: Segue, customers: list[str], done: threading.Event) -> None:
    """Round-robin over customers, so each one's events are spread over the whole run."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=segue.settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(EVENTS_EACH):
                for c in customers:
                    ev = event("search", c, event_id=f"{c}-{i}", query="q")
                    await producer.send(segue.names.source("web"), orjson.dumps(ev), key=c.encode())
                await asyncio.sleep(0.05)
            await producer.flush()
        finally:
            await producer.stop()
            done.set()

    asyncio.run(run())


def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    segue = start_segue(kafka, tmp_path, session_timeout_seconds=6.0)
    customers = [f"r-{uuid.uuid4().hex[:6]}-{n}" for n in range(CUSTOMERS)]
    total = CUSTOMERS * EVENTS_EACH
    done = threading.Event()
    producer = threading.Thread(target=produce_stream, args=(segue, customers, done))
    try:
        producer.start()
        log = segue.names.decision_log
        before = segue.consume(log, lambda recs: len(recs) >= total // 4, timeout=60)
        assert len(before) < total, "the worker finished before it could be killed"
        segue.worker.kill()
        segue.worker.start()
        wait_ready(segue)
        producer.join(timeout=120)
        assert done.is_set()

        wanted = set(customers)

        def all_decided(recs: list[Any]) -> bool:
            ids = {r.key for r in recs if r.key and r.key.decode() in wanted}
            return len(ids) == CUSTOMERS and _event_ids(recs, wanted) >= total

        records = segue.consume(log, all_decided, timeout=120)
    finally:
        segue.worker.stop()

    decisions = [orjson.loads(r.value) for r in records if r.key and r.key.decode() in wanted]
    print(f"{len(decisions) - total} decisions re-emitted after the restart")
    by_event: dict[str, set[tuple[str, float]]] = defaultdict(set)
    for d in decisions:
        by_event[d["event_id"]].add((d["decision_id"], d["features"]["log_web_events"]))
    assert len(by_event) == total, f"{total - len(by_event)} events were never decided"
    for event_id, seen in by_event.items():
        index = int(event_id.rsplit("-", 1)[1])
        assert len(seen) == 1, f"{event_id} decided differently after the restart: {seen}"
        [(_, log_web_events)] = seen
        assert log_web_events == round(math.log1p(index + 1), 3), event_id  # features round


def _event_ids(recs: list[Any], wanted: set[str]) -> int:
    ids = {orjson.loads(r.value)["event_id"] for r in recs if r.key and r.key.decode() in wanted}
    return len(ids)
