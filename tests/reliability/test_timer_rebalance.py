"""Scenario: customers wait in a journey while a second worker joins the group and the
first one then leaves, so their partitions move twice (two rebalances) during the wait.

We expect each customer's timer to fire exactly once, by whichever worker owns the
customer's partition at the wake time: timers live in a table that moves with its
partition, and a worker rebuilds its due-time index after every recovery.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

import engine.localkafka as localkafka
from engine.supervise import WorkerProcess
from tests.harness import Segue, event, free_port, remind_later_catalogue, start_segue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_SECONDS = 30
CUSTOMERS = 9
CATALOGUE = remind_later_catalogue("moving", WAIT_SECONDS)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def test_timers_fire_once_while_their_partitions_move(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(CATALOGUE)
    first = start_segue(
        kafka,
        tmp_path / "a",
        journeys_file=str(journeys),
        session_timeout_seconds=6.0,
        timer_tick_seconds=0.5,
    )
    second_settings = replace(first.settings, web_port=free_port(), data_dir=tmp_path / "b")
    second = Segue(second_settings, WorkerProcess(second_settings, tmp_path / "b" / "worker.log"))
    customers = [f"m-{uuid.uuid4().hex[:6]}-{n}" for n in range(CUSTOMERS)]
    carts = [event("add_to_cart", c, product_id="p1", price=20.0) for c in customers]
    email = first.names.decisions("email")
    try:
        first.produce("web", carts)
        first.wait_metric(
            "segue_journey_transitions_total", CUSTOMERS, journey="remind_later", kind="entered"
        )
        second.worker.start()  # rebalance 1: the partitions are shared
        deadline = time.monotonic() + 60
        while not ready(second.settings.web_port):
            assert time.monotonic() < deadline, second.worker.log_tail()
            assert second.worker.alive, second.worker.log_tail()
            time.sleep(0.5)
        first.worker.stop()  # rebalance 2: the second worker takes every partition
        assert time.time_ns() // 1_000_000 < carts[0]["time"] + WAIT_SECONDS * 1000, (
            "the partitions moved after the wake time; the test proves nothing"
        )

        def mine(recs: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
            docs = [orjson.loads(r.value or b"{}") for r in recs]
            # The journey's reminders only: next-best-action may answer the add_to_cart
            # (a decision point) on email too.
            return [
                d
                for d in docs
                if d["customer_id"] in customers and d.get("journey") == "remind_later"
            ]

        def each_reminded(recs: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return {d["customer_id"] for d in mine(recs)} >= set(customers)

        reminders = mine(second.consume(email, each_reminded, WAIT_SECONDS + 60))
        time.sleep(5)  # ten ticks: long enough for any second firing to show
        again = mine(second.consume(email, lambda recs: False, 3))
    finally:
        second.worker.stop()
        first.worker.stop()
    assert sorted(d["customer_id"] for d in reminders) == sorted(customers)
    assert len(again) == CUSTOMERS, "a timer fired more than once"
