"""A ``segue worker`` under measurement, and the Kafka reads and writes around it.

A start is timed from the launch of the process to ``/readyz`` answering 200. Faust
serves HTTP only once the first table recovery is done, so until then the port is closed;
what the worker did meanwhile comes from its log afterwards (:data:`PHASES`).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from benchmarks.ingest import scrape
from benchmarks.procstats import CLK_TCK, BenchError, Snapshot, cpu_ticks, status_kib
from engine.admin import admin_client
from engine.records import Record
from engine.settings import Settings
from engine.supervise import WorkerProcess

READY_SECONDS = 600.0
"""Longest a start may take to answer /readyz: a million-customer recovery fits."""
POLL_SECONDS = 0.05
PROGRESS_SECONDS = 10.0
PHASES = {
    "first_log": "[^Worker]: Starting...",
    "partitions_assigned": "Executing _on_partitions_assigned",
    "stores_opened": "opening partition",
    "recovery_signalled": "generation id",
    "changelog_reading": "Restoring state from changelog topics",
    "changelog_read": "Done reading from changelog topics",
    "recovery_complete": "Restore complete!",
    "worker_ready": "Worker ready",
}
"""Faust log lines that mark a start's phases; the last line matching each counts (the
first for ``first_log``)."""
REMAINING = re.compile(rb"total remaining=(\d+)")
"""Faust's periodic "Still fetching changelog topics for recovery" line."""


def say(line: str) -> None:
    print(line, flush=True)


def readyz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@dataclass
class Started:
    worker: WorkerProcess
    launched_at: float
    """Unix time of the launch, to place the worker's log lines."""
    log_offset: int
    result: dict[str, Any]


def start_worker(settings: Settings, log_path: Path, label: str, brokers: Sequence[int]) -> Started:
    """Launch a worker and wait until /readyz answers 200; what the start cost.

    ``other_cpu_percent`` is what the machine spent on anything but this worker and the
    broker meanwhile, in % of one core, and ``other_cpu_by_source`` on what: high means
    the numbers are disturbed.
    """
    offset = log_path.stat().st_size if log_path.exists() else 0
    worker = WorkerProcess(settings, log_path)
    launched_at, launched = time.time(), time.monotonic()
    worker.start()
    assert worker.proc is not None
    pid = worker.proc.pid
    first = Snapshot.take(pid, brokers)
    next_report = launched + PROGRESS_SECONDS
    while readyz(settings.web_port) != 200:
        now = time.monotonic()
        if not worker.alive:
            raise BenchError(f"the {label} worker exited:\n{worker.log_tail()}")
        if now - launched > READY_SECONDS:
            worker.stop()
            raise BenchError(f"the {label} worker not ready in {READY_SECONDS:.0f} s")
        if now >= next_report:
            say(f"  {label}: not ready after {now - launched:.0f} s{remaining(log_path)}")
            next_report += PROGRESS_SECONDS
        time.sleep(POLL_SECONDS)
    ready = time.monotonic() - launched
    last = Snapshot.take(pid, brokers)
    cpu = cpu_ticks(pid) / CLK_TCK
    metrics = scrape(settings.web_port) or {}
    result = {
        "ready_seconds": round(ready, 3),
        "segue_recovery_seconds": round(metrics.get("segue_recovery_seconds", float("nan")), 3),
        "cpu_seconds_until_ready": round(cpu, 2),
        "rss_mib_when_ready": round(status_kib(pid, "VmRSS") / 1024, 1),
        "peak_rss_mib_until_ready": round(status_kib(pid, "VmHWM") / 1024, 1),
        "broker_cpu_percent": first.broker_percent(last),
        **first.others(last),
    }
    say(
        f"  {label}: ready {ready:.2f} s after launch; recovery {result['segue_recovery_seconds']}"
        f" s; RSS {result['rss_mib_when_ready']} MiB (peak {result['peak_rss_mib_until_ready']})"
    )
    return Started(worker, launched_at, offset, result)


def stop_worker(started: Started, *, kill: bool = False) -> dict[str, Any]:
    """Stop gracefully (SIGTERM), or SIGKILL it as a crash would; the start's result with
    its phases from the log and how long the stop took."""
    began = time.monotonic()
    if kill:
        started.worker.kill()
    else:
        code = started.worker.stop(timeout=120)
        if code not in (0, None):
            say(f"  note: the worker exited with {code}")
    result = started.result | {"stop_seconds": round(time.monotonic() - began, 2)}
    result["phases_seconds_after_launch"] = phases(started)
    return result


def remaining(log_path: Path) -> str:
    """Faust's latest count of changelog records left to recover, if it logged one."""
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 65536))
        found = REMAINING.findall(log.read())
    return f"; {int(found[-1]):,} changelog records to go" if found else ""


def phases(started: Started) -> dict[str, float]:
    """When each of PHASES last appeared in this start's log, in seconds after launch."""
    found: dict[str, float] = {}
    with started.worker.log_path.open("rb") as log:
        log.seek(started.log_offset)
        for line in log:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            at = datetime.fromisoformat(doc["ts"]).timestamp() - started.launched_at
            for name, marker in PHASES.items():
                if marker in doc.get("msg", "") and not (name == "first_log" and name in found):
                    found[name] = round(at, 3)
    return found


# --- Kafka ----------------------------------------------------------------------------


async def topic_shape(settings: Settings, topic: str) -> dict[str, Any]:
    """Partition count and the configs set on ``topic`` itself (not broker defaults)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([topic])
        (resp,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (_, _, _, _, entries), *_ = resp.resources
    # Entries are (name, value, read_only, is_default (v0) or config_source (v1+), ...);
    # config source 1 is DYNAMIC_TOPIC_CONFIG, a config set on the topic itself.
    own = (lambda e: e[3] == 1) if resp.API_VERSION else (lambda e: e[3] is False)
    topic_level = {e[0]: e[1] for e in entries if own(e)}
    return {"partitions": len(meta["partitions"]), "configs": topic_level}


async def read_topic(
    bootstrap: str, topic: str, partitions: int, start: dict[int, int] | None = None
) -> list[Any]:
    """Every record of ``topic`` from ``start`` (partition -> offset; default the
    beginning) up to its end offsets as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        seen: list[Any] = []
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise BenchError(f"could not read {topic} to its end in 60 s")
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                seen += recs
        return seen
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def wait_consumed(port: int, events: int, timeout: float, what: str) -> None:
    """Until the worker on ``port`` has consumed ``events`` records since its start."""
    deadline = time.monotonic() + timeout
    while (scrape(port) or {}).get("segue_events_consumed_total", 0) < events:
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: the worker did not consume {events} events in {timeout} s")
        time.sleep(0.01)


async def produce(
    settings: Settings, records: list[tuple[str, bytes, bytes]], *, in_order: bool = False
) -> list[Record]:
    """Send (topic, key, value) with the default partitioner and wait until the worker has
    consumed them; the records as Kafka has them. ``in_order`` sends the next only once
    the worker has consumed the last, so it applies them in this order across topics."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        out = []
        for topic, key, value in records:
            meta = await producer.send_and_wait(topic, value, key=key)
            out.append(Record(topic, meta.partition, meta.offset, key, value, []))
            if in_order:
                wait_consumed(settings.web_port, len(out), 30, "self-check")
    finally:
        await producer.stop()
    wait_consumed(settings.web_port, len(out), 30, "produce")
    return out
