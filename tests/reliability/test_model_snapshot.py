"""Scenario: a worker learns from outcomes and publishes its model to the compacted model
topic; then it is killed with SIGKILL and restarted on its own data dir, and a second
worker with an empty data dir joins the same app.

We expect neither to start from zero: their first decisions carry the snapshot's version
(``uplift-heads/<learned updates>``, not ``/0``), and every eligible candidate's score
is what the published snapshot predicts for the decision's features.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

import engine.localkafka as localkafka
from engine.app import fresh_policy
from engine.model_store import restore
from engine.supervise import WorkerProcess
from models.snapshot import Snapshot, decode, encode, read_header
from tests.harness import Segue, event, free_port, start_segue, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICY = "uplift-heads"
WINDOW_SECONDS = 1
"""The attribution window of the workers here: their decisions teach a second after."""


def decide_for(
    segue: Segue, customers: list[str], timeout: float = 45.0
) -> dict[str, dict[str, Any]]:
    """One search per customer, and the next-best-action decision each got; ``timeout``
    covers a rebalance when a worker joins."""
    segue.produce("web", [event("search", c, event_id=f"{c}-s", query="boots") for c in customers])
    wanted = set(customers)

    def mine(recs: list[Any]) -> dict[str, dict[str, Any]]:
        # The first decision of each: an event re-read after a rebalance is decided again
        # under the same id, re-sent without its candidates (engine/pending.py).
        first: dict[str, dict[str, Any]] = {}
        for r in recs:
            if r.key and r.key.decode() in wanted:
                d = orjson.loads(r.value)
                if d["event_id"].endswith("-s"):
                    first.setdefault(d["customer_id"], d)
        return first

    done = segue.consume(segue.names.decision_log, lambda rs: len(mine(rs)) == len(wanted), timeout)
    got = mine(done)
    assert set(got) == wanted, f"undecided: {wanted - set(got)}"
    return got


def teach(segue: Segue, n: int) -> int:
    """Decide for ``n`` customers and answer each acting decision, converted and
    dismissed in turn; wait until the worker learned them all. Returns how many."""
    decided = decide_for(segue, [f"learn-{uuid.uuid4().hex[:6]}-{i}" for i in range(n)])
    acting = [d for d in decided.values() if d["channel"]]
    assert len(acting) >= n // 2, "too few decisions acted to teach the model"
    outcomes = [
        event(
            "converted" if i % 2 == 0 else "dismissed",
            d["customer_id"],
            decision_id=d["decision_id"],
            channel=d["channel"],
        )
        for i, d in enumerate(acting)
    ]
    before = segue.metric("segue_model_rewards_total")
    segue.produce("outcome", outcomes)
    # A decision teaches when it leaves the customer's memory (engine/attribution.py):
    # these workers' window is WINDOW_SECONDS, and a later record of the customer shows
    # it has passed.
    time.sleep(WINDOW_SECONDS + 0.5)
    segue.produce("web", [event("page_view", d["customer_id"]) for d in acting])
    segue.wait_metric("segue_model_rewards_total", before + len(acting))
    return len(acting)


def published(segue: Segue, updates: int, timeout: float = 30.0) -> Snapshot:
    """The snapshot of ``updates`` updates on the model topic, decoded."""
    key = f"{segue.settings.app_id}/{POLICY}".encode()

    def match(recs: list[Any]) -> list[Any]:
        return [r for r in recs if r.key == key and read_header(r.value).updates == updates]

    recs = segue.consume(segue.names.model_snapshots, lambda rs: bool(match(rs)), timeout)
    assert match(recs), f"no snapshot with {updates} updates on {segue.names.model_snapshots}"
    return decode(match(recs)[-1].value)


def assert_decided_by(snap: Snapshot, decisions: list[dict[str, Any]]) -> None:
    learned_arm_seen = False
    for d in decisions:
        assert d["model_version"] == snap.header.version, d["model_version"]
        eligible = [c for c in d["candidates"] if c["eligible"]]
        assert eligible
        arms = [f"{c['action']}:{c['channel']}" for c in eligible]
        predicted = snap.policy.score_many(d["features"], arms)
        for c, arm in zip(eligible, arms, strict=True):
            assert c["score"] == round(predicted[arm], 6), (arm, c["score"], predicted[arm])
            learned_arm_seen |= c["score"] != 0.5
    assert learned_arm_seen, "every score is the untaught 0.5: nothing learned was used"


def wait_committed(segue: Segue) -> None:
    """Until the worker commits after now: what it learned is no longer re-read after a
    crash (a commit follows the flush of the state it wrote), so the restarted worker's
    count is the snapshot's, not the snapshot's plus replayed outcomes."""
    since = time.time()
    segue.produce("web", [event("page_view", f"nudge-{uuid.uuid4().hex[:6]}")])
    deadline = time.monotonic() + 30
    while segue.metric("segue_last_commit_timestamp_seconds") <= since:
        assert time.monotonic() < deadline, "the worker did not commit"
        time.sleep(0.2)


def test_a_restarted_and_a_new_worker_start_from_the_published_model(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    segue = start_segue(
        kafka,
        tmp_path / "a",
        session_timeout_seconds=6.0,
        model_snapshot_seconds=1.0,
        attribution_window_seconds=WINDOW_SECONDS,
    )
    second: Segue | None = None
    try:
        assert segue.metric("segue_model_updates") == 0
        learned = teach(segue, 12)
        snap = published(segue, learned)
        assert snap.header.version == f"{POLICY}/{learned}"
        assert segue.metric("segue_model_snapshots_published_total") >= 1
        wait_committed(segue)

        # (a) SIGKILL, then the same worker on the same data dir.
        segue.worker.kill()
        segue.worker.start()
        wait_ready(segue)
        assert segue.metric("segue_model_updates") == learned
        assert segue.metric("segue_model_snapshot_rejected_total") == 0
        after_restart = decide_for(segue, [f"a-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)])
        assert_decided_by(snap, list(after_restart.values()))

        # (b) A second worker of the same app, with nothing on its disk.
        settings = replace(segue.settings, data_dir=tmp_path / "b", web_port=free_port())
        second = Segue(settings, WorkerProcess(settings, tmp_path / "b" / "worker.log"))
        second.worker.start()
        deadline = time.monotonic() + 120
        decided: dict[str, dict[str, Any]] = {}
        while True:  # until the group gave it partitions and it decided on one of them
            assert second.worker.alive, second.worker.log_tail()
            assert time.monotonic() < deadline, f"no decision by it:\n{second.worker.log_tail()}"
            try:
                if second.metric("segue_decisions_total") > 0:
                    break
            except OSError:  # its web server is not up yet
                pass
            # Events on partitions moving to the joining worker wait for its recovery.
            batch = [f"b-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
            decided |= decide_for(segue, batch, timeout=120.0)
        assert second.metric("segue_model_updates") == learned
        assert_decided_by(snap, list(decided.values()))

        show = subprocess.run(
            [sys.executable, "-m", "engine.cli", "model", "show"],
            env={**os.environ, **settings.to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert show.returncode == 0, show.stderr
        assert f"{settings.app_id}/{POLICY}: {POLICY}/{learned} " in show.stdout, show.stdout
    finally:
        if second is not None:
            second.worker.stop()
        segue.worker.stop()


def test_a_clean_shutdown_publishes_what_was_learned_since_the_last_snapshot(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    """Scenario: a worker whose snapshot interval is an hour learns, then is stopped
    with SIGTERM; then a corrupt record is published over its snapshot. We expect one
    snapshot, published on the way out, with all it learned, and a worker starting after
    the corrupt record to refuse it and take that snapshot; after a tombstone for the
    key, to start fresh."""
    segue = start_segue(
        kafka,
        tmp_path,
        model_snapshot_seconds=3600.0,
        attribution_window_seconds=WINDOW_SECONDS,
    )
    try:
        learned = teach(segue, 6)
        assert segue.metric("segue_model_snapshots_published_total") == 0
    finally:
        assert segue.worker.stop() == 0, segue.worker.log_tail()
    snap = published(segue, learned, timeout=15)
    assert snap.policy.version == f"{POLICY}/{learned}"

    # A corrupt record lands on top of it: the next worker falls back to the good one.
    key = f"{segue.settings.app_id}/{POLICY}".encode()
    good = encode(snap.policy, created_at_ms=snap.header.created_at_ms)
    segue.produce("model.snapshots", [(key, good[:-1] + bytes([good[-1] ^ 1]))])
    restored = asyncio.run(restore(segue.settings, fresh_policy(segue.settings)))
    assert restored.header == snap.header
    assert [r.split(": ", 1)[1] for r in restored.rejected] == [
        "checksum mismatch: the snapshot is corrupt"
    ]

    # A tombstone resets the model: the next worker starts fresh, refusing nothing.
    segue.produce("model.snapshots", [(key, None)])
    reset = asyncio.run(restore(segue.settings, fresh_policy(segue.settings)))
    assert (reset.header, reset.policy.updates, reset.rejected) == (None, 0, ())
