"""Scenario: a customer is in the middle of a journey's wait when the worker is killed
with SIGKILL, and the worker is restarted.

We expect the timer to fire exactly once, after the restart: one reminder on the channel
topic, at the wait's wake time (event time + the wait), not zero (a timer that lived in
process memory dies with it) and not two. With the RocksDB store the timer comes back
from local state; with the memory store, from the table's changelog topic.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import engine.localkafka as localkafka
from tests.harness import event, remind_later_catalogue, start_segue, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_SECONDS = 20
CATALOGUE = remind_later_catalogue("crash", WAIT_SECONDS)


def reminders(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journey's reminders among a customer's email decisions: the add_to_cart is a
    decision point too, and next-best-action may answer it on email."""
    return [d for d in decisions if d.get("journey") == "remind_later"]


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_a_timer_survives_sigkill_and_fires_exactly_once(
    kafka: localkafka.ClusterInfo, tmp_path: Path, store: str
) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(CATALOGUE)
    segue = start_segue(
        kafka,
        tmp_path,
        table_store=store,
        journeys_file=str(journeys),
        session_timeout_seconds=6.0,
        timer_tick_seconds=0.5,
    )
    customer = f"t-{uuid.uuid4().hex[:8]}"
    cart = event("add_to_cart", customer, product_id="p1", price=20.0)
    email = segue.names.decisions("email")
    try:
        segue.produce("web", [cart])
        segue.wait_metric(
            "segue_journey_transitions_total", 1, journey="remind_later", kind="entered"
        )
        time.sleep(3)  # the entry's table writes reach the changelog; the wait goes on
        assert reminders(segue.decisions(email, customer, bool, timeout=1)) == []
        segue.worker.kill()
        killed_ms = time.time_ns() // 1_000_000
        assert killed_ms < cart["time"] + WAIT_SECONDS * 1000, "killed after the wake time"
        segue.worker.start()
        wait_ready(segue)

        [reminder] = reminders(
            segue.decisions(email, customer, lambda got: bool(reminders(got)), WAIT_SECONDS + 60)
        )
        # Long enough for any second firing: dozens of ticks at 0.5 s.
        after = reminders(
            segue.decisions(email, customer, lambda got: len(reminders(got)) > 1, timeout=10)
        )
    finally:
        segue.worker.stop()
    assert after == [reminder], "the timer fired more than once"
    assert reminder["action"] == "cart_reminder" and reminder["journey"] == "remind_later"
    assert reminder["event_time_ms"] == cart["time"] + WAIT_SECONDS * 1000
    assert reminder["decided_at_ms"] > killed_ms
    assert reminder["catalogue_version"] == "crash@1"
