"""Journey catalogues on a running worker: published at runtime through the control
topic with `segue journeys publish`, in force without a restart, recorded on every
decision; an invalid record on the control topic is refused and changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.control import CATALOGUE_KEY
from tests.harness import Segue, event

pytestmark = pytest.mark.integration

LIVE = """\
catalogue: live
version: {version}
journeys:
  - id: search_followup
    class: marketing
    priority: 10
    entry: {{event: web.search}}
    steps:
      - id: suggest
        act: {{action: product_recommendation, channels: [inapp]}}
      - id: rest
        wait: 1d
"""


def segue_cli(segue: Segue, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env={**os.environ, **segue.settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def in_force(segue: Segue, name: str, version: int) -> None:
    segue.wait_metric(
        "segue_journey_catalogue_info", 1, catalogue=name, version=str(version), timeout=30
    )


def test_a_published_catalogue_takes_effect_without_a_restart(segue: Segue, tmp_path: Path) -> None:
    before = f"c-{uuid.uuid4().hex[:8]}"
    segue.produce("web", [event("search", before, query="boots")])
    [logged] = segue.decisions(segue.names.decision_log, before, bool)
    assert logged["catalogue_version"] == "default@3" and logged["journey"] is None

    pid = segue.worker.proc.pid if segue.worker.proc else None
    path = tmp_path / "live.yaml"
    path.write_text(LIVE.format(version=3))
    published = segue_cli(segue, "journeys", "publish", str(path))
    assert published.returncode == 0, published.stderr
    assert "published live@3" in published.stdout
    in_force(segue, "live", 3)

    after = f"c-{uuid.uuid4().hex[:8]}"
    segue.produce("web", [event("search", after, query="boots")])
    [suggestion] = segue.decisions(segue.names.decisions("inapp"), after, bool)
    assert suggestion["journey"] == "search_followup"
    assert suggestion["catalogue_version"] == "live@3"
    assert segue.worker.alive and segue.worker.proc and segue.worker.proc.pid == pid

    current = segue_cli(segue, "journeys", "current")
    assert current.stdout.startswith("live@3 "), current


def test_publish_refuses_an_invalid_file_or_a_version_not_above_the_one_in_force(
    segue: Segue, tmp_path: Path
) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(LIVE.format(version=4))
    assert segue_cli(segue, "journeys", "publish", str(path)).returncode == 0
    in_force(segue, "live", 4)

    path.write_text(LIVE.format(version=4).replace("search_followup", "search_again"))
    same = segue_cli(segue, "journeys", "publish", str(path))
    assert same.returncode == 1
    assert "version 4 is not above the version in force (live@4)" in same.stderr

    path.write_text(LIVE.format(version=5).replace("web.search", "web.serch"))
    bad = segue_cli(segue, "journeys", "publish", str(path))
    assert bad.returncode == 1 and "not published" in bad.stderr
    assert f"{path}:7:" in bad.stdout and "web.serch" in bad.stdout


def test_an_invalid_record_on_the_control_topic_is_refused_and_changes_nothing(
    segue: Segue,
) -> None:
    # Valid JSON, invalid catalogue: a duration the loader refuses.
    invalid = LIVE.format(version=9).replace("wait: 1d", "wait: forever")

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=segue.settings.kafka_bootstrap)
        await producer.start()
        try:
            for value in (b"not json", orjson.dumps({"source": invalid, "file": "sneaky.yaml"})):
                await producer.send_and_wait(segue.names.control, value, key=CATALOGUE_KEY)
        finally:
            await producer.stop()

    rejected = segue.metric("segue_journey_catalogue_rejected_total")
    asyncio.run(produce())
    segue.wait_metric("segue_journey_catalogue_rejected_total", rejected + 2)
    assert segue.metric("segue_journey_catalogue_info", catalogue="live", version="9") == 0
    assert segue.metric("segue_journey_catalogue_info") == 1
