"""Talking to a running Segue through the real broker: produce, consume, start workers.

Every worker gets its own topic prefix and consumer group, so tests never see each
other's records. The fixtures that use this live in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

import engine.localkafka as localkafka
from engine.admin import create_topics
from engine.journey_loader import default_catalogue_text
from engine.settings import Settings
from engine.supervise import WorkerProcess
from topics.catalogue import INPUT_MAX_MESSAGE_BYTES, TopicNames


def cache_dir() -> Path:
    return Path(os.environ.get("SEGUE_CACHE_DIR", Path.home() / ".cache" / "segue"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(etype: str, customer_id: str, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or f"{etype}-{uuid.uuid4().hex[:10]}",
        "customer_id": customer_id,
        "type": etype,
        "time": time.time_ns() // 1_000_000,
        **data,
    }


ANY_HOUR_CONTACTS = """\
contact_policy:
  caps:
    email: {day: 20, week: 20}
    sms: {day: 20, week: 20}
    push: {day: 20, week: 20}
    inapp: {day: 20, week: 20}
    agent: {day: 20, week: 20}
  total: {day: 100, week: 100}
  min_gap: 0s
  quiet_hours: {start: "00:00", end: "00:00"}
"""
"""The contact policy of the catalogues integration tests run: no quiet hours and room
for bursts. Their events carry the wall clock's time, so with the default policy what a
test sees would depend on the hour it runs (quiet hours) and on the order of its
customer's events (caps, gap). The rules themselves are tested with a controlled clock in
tests/unit/test_contact_policy.py and tests/unit/test_contact_wiring.py."""


def any_hour(catalogue: str) -> str:
    """``catalogue`` with its contact policy replaced by :data:`ANY_HOUR_CONTACTS`."""
    kept = re.sub(r"(?ms)^contact_policy:\n.*?(?=^\S|\Z)", "", catalogue)
    return kept.rstrip("\n") + "\n" + ANY_HOUR_CONTACTS


def remind_later_catalogue(name: str, wait_seconds: int) -> str:
    """A one-journey catalogue for timer tests: an add_to_cart waits ``wait_seconds``,
    then an email reminder."""
    return (
        f"""\
catalogue: {name}
version: 1
journeys:
  - id: remind_later
    class: marketing
    priority: 10
    entry: {{event: web.add_to_cart}}
    steps:
      - id: pause
        wait: {wait_seconds}s
      - id: remind
        act: {{action: cart_reminder, channels: [email]}}
"""
        + ANY_HOUR_CONTACTS
    )


@dataclass
class Segue:
    """A running worker and the ways a test talks to it through Kafka."""

    settings: Settings
    worker: WorkerProcess

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    def produce(
        self,
        source: str,
        records: Sequence[dict[str, Any] | tuple[bytes | None, bytes | None]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send events (dicts, keyed by customer_id or else anonymous_id) or raw (key, value)
        pairs, in order."""

        async def run() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                max_request_size=INPUT_MAX_MESSAGE_BYTES,
            )
            await producer.start()
            try:
                for rec in records:
                    key: bytes | None
                    value: bytes | None
                    if isinstance(rec, dict):
                        who = rec.get("customer_id") or rec["anonymous_id"]
                        key, value = who.encode(), orjson.dumps(rec)
                    else:
                        key, value = rec
                    await producer.send_and_wait(
                        self.names.source(source), value=value, key=key, headers=headers
                    )
            finally:
                await producer.stop()

        asyncio.run(run())

    def metric(self, name: str, **labels: str) -> float:
        """A counter from the worker's /metrics, summed over series matching ``labels``."""
        url = f"http://127.0.0.1:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def wait_metric(self, name: str, at_least: float, timeout: float = 30.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name, **labels) < at_least:
            assert time.monotonic() < deadline, f"{name}{labels} stayed below {at_least}"
            time.sleep(0.1)

    def consume(
        self,
        topic: str,
        until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
        timeout: float = 45.0,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Read ``topic`` from the start until ``until(records)`` holds or time runs out."""

        async def run() -> list[ConsumerRecord[bytes, bytes]]:
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            await consumer.start()
            seen: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + timeout
            try:
                while not until(seen) and time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=500)
                    for recs in batch.values():
                        seen.extend(recs)
            finally:
                await consumer.stop()
            return seen

        return asyncio.run(run())

    def decisions(
        self,
        topic: str,
        customer_id: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 45.0,
    ) -> list[dict[str, Any]]:
        """Decisions for one customer on ``topic``, read until ``until`` holds."""

        def mine(recs: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
            docs = [orjson.loads(r.value or b"{}") for r in recs]
            return [d for d in docs if d.get("customer_id") == customer_id]

        return mine(self.consume(topic, lambda recs: until(mine(recs)), timeout))


def start_segue(kafka: localkafka.ClusterInfo, tmp: Path, **overrides: Any) -> Segue:
    tag = uuid.uuid4().hex[:8]
    # Customers with random ids: a holdout share would take a random few of each test's
    # customers out of marketing. Holdout is tested with chosen ids (tests/unit).
    overrides.setdefault("holdout_share", 0.0)
    if "journeys_file" not in overrides:
        tmp.mkdir(parents=True, exist_ok=True)
        journeys = tmp / "journeys.yaml"
        journeys.write_text(any_hour(default_catalogue_text()))
        overrides["journeys_file"] = str(journeys)
    settings = replace(
        Settings.from_env({}),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"t{tag}.",
        app_id=f"segue-test-{tag}",
        data_dir=tmp,
        web_port=free_port(),
        **overrides,
    )
    asyncio.run(create_topics(settings, report=lambda line: None))
    segue = Segue(settings, WorkerProcess(settings, tmp / "worker.log"))
    segue.worker.start()
    try:
        wait_ready(segue)
    except BaseException:
        segue.worker.stop()  # the caller never gets it, so never stops it
        raise
    return segue


def wait_ready(segue: Segue, timeout: float = 120.0) -> None:
    """Until the worker decides a warm-up event: it has joined the group and is consuming."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert segue.worker.alive, f"worker exited:\n{segue.worker.log_tail()}"
        customer = f"warmup-{uuid.uuid4().hex[:6]}"
        segue.produce("web", [event("login", customer)])
        got = segue.decisions(segue.names.decision_log, customer, bool, timeout=5)
        if got:
            return
    raise AssertionError(f"worker not ready in {timeout}s:\n{segue.worker.log_tail()}")
