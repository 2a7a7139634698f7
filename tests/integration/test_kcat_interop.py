"""Scenario: an independent Kafka client (kcat, librdkafka) produces the events and reads
the decisions. We expect Segue to accept what kcat writes and kcat to read what Segue
writes, headers included.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import orjson
import pytest

from tests.harness import Segue, event

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat")


@pytest.fixture(scope="module")
def kcat() -> str:
    if KCAT is None:
        pytest.fail("kcat is not installed: run `make deps` (it installs Debian's kcat)")
    return KCAT


def test_kcat_produces_events_and_consumes_decisions(segue: Segue, kcat: str) -> None:
    customer = f"k-{uuid.uuid4().hex[:8]}"
    lines = [
        orjson.dumps(event("product_view", customer, event_id="kv1", product_id="p1")),
        orjson.dumps(event("add_to_cart", customer, event_id="kv2", product_id="p1", price=9.5)),
    ]
    payload = b"".join(customer.encode() + b"|" + line + b"\n" for line in lines)
    # librdkafka's default partitioner is CRC32-based; murmur2_random is the Java client's,
    # which Segue requires so a customer's events share one partition on every topic.
    subprocess.run(
        [
            kcat,
            "-P",
            "-b",
            segue.settings.kafka_bootstrap,
            "-t",
            segue.names.source("web"),
            "-K",
            "|",
            "-X",
            "topic.partitioner=murmur2_random",
            "-H",
            "origin=kcat",
        ],
        input=payload,
        check=True,
        timeout=30,
    )
    log = segue.names.decision_log
    deadline = time.monotonic() + 45
    mine: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(mine) < 2:
        out = subprocess.run(
            [
                kcat,
                "-C",
                "-b",
                segue.settings.kafka_bootstrap,
                "-t",
                log,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-J",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        envelopes = [json.loads(line) for line in out.splitlines() if line.strip()]
        mine = [e for e in envelopes if e["key"] == customer]
        time.sleep(0.5)
    assert [json.loads(e["payload"])["event_id"] for e in mine] == ["kv1", "kv2"]
    for env in mine:
        decision = json.loads(env["payload"])
        headers = dict(zip(env["headers"][::2], env["headers"][1::2], strict=True))
        assert headers["ce_id"] == decision["decision_id"]
        assert headers["ce_type"] == "segue.decision"
        assert decision["customer_id"] == customer
