"""Scenario: an SRE probes a running worker.

We expect /healthz to answer, /readyz to say ready once it consumes, and /metrics to
carry build info, commits, lag, table sizes and both event loops' lateness next to the
service metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.harness import Segue, event

pytestmark = pytest.mark.integration


def get(segue: Segue, path: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{segue.settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def exposition(segue: Segue) -> str:
    url = f"http://127.0.0.1:{segue.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_health_readiness_and_worker_gauges(segue: Segue) -> None:
    assert get(segue, "/healthz") == (200, {"status": "ok"})
    assert get(segue, "/readyz") == (200, {"status": "ready"})

    customer = f"o-{uuid.uuid4().hex[:8]}"
    segue.produce("web", [event("search", customer, query="x")])
    segue.decisions(segue.names.decision_log, customer, bool)
    before = time.time()
    segue.wait_metric("segue_last_commit_timestamp_seconds", before - 1, timeout=20)
    segue.wait_metric("segue_table_keys", 1, table="profiles", timeout=20)
    assert segue.metric("segue_build_info") == 1
    assert segue.metric("segue_rebalances_total") >= 1
    # The event loop is probed, 20 times a second; the consumer runs on it, so it is the
    # only one (engine/transport.py).
    segue.wait_metric("segue_event_loop_lag_seconds_count", 20, loop="main", timeout=10)
    assert 'loop="consumer"' not in exposition(segue)
    # Everything produced so far is decided and committed: the lag drains to zero.
    series = f'segue_consumer_lag_records{{topic="{segue.names.source("web")}"}}'
    deadline = time.monotonic() + 20
    while series not in exposition(segue):
        assert time.monotonic() < deadline, f"{series} never sampled"
        time.sleep(0.5)
    while segue.metric("segue_consumer_lag_records", topic=segue.names.source("web")) > 0:
        assert time.monotonic() < deadline, "lag on the web topic did not drain"
        time.sleep(0.5)
    # Only the topics the worker processes and commits: not the tables' changelogs,
    # assigned to it too but never committed (their "lag" would be every record the
    # tables wrote), nor Faust's leader topic.
    lagged = set(re.findall(r'segue_consumer_lag_records\{topic="([^"]+)"\}', exposition(segue)))
    assert segue.names.source("web") in lagged
    assert not {t for t in lagged if t.endswith("-changelog") or "__assignor" in t}, lagged


def test_recovery_gauge_holds_the_recovery_before_ready(segue: Segue) -> None:
    # Faust serves /metrics only once its first recovery is done, so by the first scrape
    # the gauge holds that recovery: set (the unset gauge reads 0.0) and finite.
    assert "# TYPE segue_recovery_seconds gauge" in exposition(segue)
    assert 0.0 < segue.metric("segue_recovery_seconds") < float("inf")


def test_the_fetch_size_follows_the_input_rate(segue: Segue) -> None:
    """While events flow, the worker's fetches ask for SEGUE_FETCH_GATHER_MS (20 ms) of
    them; once the flow stops, for the floor of one byte again (engine/fetchsize.py)."""
    sizes: list[float] = []

    async def flow() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=segue.settings.kafka_bootstrap)
        await producer.start()
        try:
            topic = segue.names.source("web")
            for tick in range(40):  # ~500 events/s for 4 s
                for j in range(50):
                    ev = event("search", f"fetch-{j}", query="x")
                    await producer.send(
                        topic, key=ev["customer_id"].encode(), value=orjson.dumps(ev)
                    )
                await asyncio.sleep(0.1)
                if tick >= 20:  # the rate measured over at least one whole second
                    sizes.append(segue.metric("segue_fetch_min_bytes"))
        finally:
            await producer.stop()

    asyncio.run(flow())
    # ~500 events/s of some 130 bytes of key and value: 20 ms of them is ~1.3 KB; a
    # slow machine sending at half the rate still asks for hundreds of bytes.
    assert max(sizes) > 200, sizes
    deadline = time.monotonic() + 20
    while segue.metric("segue_fetch_min_bytes") != 1:
        assert time.monotonic() < deadline, "the fetch size stayed above the floor when idle"
        time.sleep(0.2)
