"""Scenario: malformed and schema-invalid records arrive between valid events.

We expect each bad record exactly once on the dead-letter topic, with its original key,
value and headers and the reason; the worker keeps running and decides what follows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter

import orjson
import pytest

from tests.harness import Segue, event
from topics.deadletter import reason_of

pytestmark = pytest.mark.integration


def test_bad_records_are_dead_lettered_once_and_valid_ones_still_decided(segue: Segue) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    key = customer.encode()
    bad = [
        (key, b'{"event_id": "m1", "customer_id": '),  # truncated JSON
        (key, orjson.dumps({**event("add_to_cart", customer), "price": "free"})),
        (key, orjson.dumps(event("teleport", customer))),  # unknown type
        (key, orjson.dumps({"type": "login", "time": 0})),  # no ids
        (key, None),  # tombstone
        (key, b"\xff\xfe\x00"),  # not UTF-8
        (key, b'{"pad": "' + b"x" * 1_048_576 + b'"}'),  # over the 1 MiB event limit
        (key, orjson.dumps({**event("login", customer), "customer_id": None})),  # null id
        (b"", orjson.dumps({**event("login", customer), "customer_id": ""})),  # empty id
        (b"c" * 300, orjson.dumps({**event("login", customer), "customer_id": "c" * 300})),
        (key, orjson.dumps({**event("login", customer), "time": "last tuesday"})),
        (key, orjson.dumps({**event("login", customer), "time": 4_102_444_800_000})),  # 2100
    ]
    segue.produce("web", bad, headers=[("trace", b"abc")])
    segue.produce("web", [event("search", customer, event_id="after-bad", query="x")])

    sent = set(bad)

    def mine(recs: list) -> list:  # type: ignore[type-arg]
        return [r for r in recs if (r.key, r.value) in sent]

    dead = mine(segue.consume(segue.names.dlq, lambda recs: len(mine(recs)) >= len(bad)))
    # Read on a little to prove nothing arrives twice.
    dead = mine(segue.consume(segue.names.dlq, lambda recs: False, timeout=3))
    # Different keys land on different partitions: compare as multisets.
    assert Counter((r.key, r.value) for r in dead) == Counter(bad)
    reasons = [reason_of(r.headers) for r in dead]
    assert Counter(r["segue.error.class"] for r in reasons) == Counter(
        {
            "malformed_json": 1,
            "schema_invalid": 6,
            "unknown_event_type": 1,
            "tombstone": 1,
            "bad_encoding": 1,
            "too_large": 1,
            "time_in_future": 1,
        }
    )
    for r, why in zip(dead, reasons, strict=True):
        assert ("trace", b"abc") in r.headers
        assert why["segue.source.topic"] == segue.names.source("web")
        assert int(why["segue.source.offset"]) >= 0 and why["segue.error.message"]

    decided = segue.decisions(
        segue.names.decision_log, customer, lambda ds: any(d["event_id"] == "after-bad" for d in ds)
    )
    assert [d["event_id"] for d in decided] == ["after-bad"]
    assert segue.worker.alive


def test_dlq_inspect_and_redrive_from_the_command_line(segue: Segue) -> None:
    """Scenario: an operator lists dead letters by reason and re-drives them unfixed.

    We expect the listing to name the reason and source, and the re-driven record to be
    rejected again by the worker, carrying where it was re-driven from.
    """
    customer = f"c-{uuid.uuid4().hex[:8]}"
    value = orjson.dumps(event("levitate", customer))
    segue.produce("web", [(customer.encode(), value)])

    def ours(recs: list) -> list:  # type: ignore[type-arg]
        return [r for r in recs if r.value == value]

    segue.consume(segue.names.dlq, lambda recs: len(ours(recs)) >= 1)
    env = {**os.environ, **segue.settings.to_env()}
    cli = [sys.executable, "-m", "engine.cli", "dlq"]
    listing = subprocess.run(
        [*cli, "inspect", "--reason", "unknown_event_type"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "unknown_event_type" in listing.stdout and segue.names.source("web") in listing.stdout
    redriven = subprocess.run(
        [*cli, "redrive", "--reason", "unknown_event_type", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert redriven.returncode == 0, redriven.stderr
    again = ours(segue.consume(segue.names.dlq, lambda recs: len(ours(recs)) >= 2))
    assert len(again) == 2
    assert reason_of(again[1].headers)["segue.error.class"] == "unknown_event_type"
    assert any(k == "segue.redriven.from" for k, _ in again[1].headers)
