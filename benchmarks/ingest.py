"""Ingest throughput on a real broker: the Segue worker next to a raw aiokafka loop.

One run, one broker, the same N records preloaded into two topics before either consumer
starts, then measured one after the other, never together:

(a) ``baseline``: one process consumes with a fresh group from the earliest offset,
    orjson-decodes each value, builds a small output dict and hands it to the producer
    without waiting for its ack; it flushes and commits every 2 s and at the end. It runs
    on uvloop's event loop, as the worker does. Measured from the first record received
    to the last output flushed.
(b) ``segue_ingest``: ``segue worker`` (default settings, a fresh topic prefix and app id)
    started on a backlog of the same records in its web topic. ``page_view`` is no decision
    point, so this is parse, validate, dedupe, profile update and route, without decide.
    About 10% of the events are anonymous-only (keyed by ``anonymous_id``) and 2% exact
    re-sends of a recent event, so the anonymous route and dedup are on the path. Measured
    by polling the worker's ``segue_events_consumed_total`` every 100 ms, from the first
    poll that sees an event to the one that sees all N.

CPU (% of one core over the window) and peak RSS come from /proc for the process under
test; the broker's CPU over the same window when this run started the broker.

    .venv/bin/python -m benchmarks.ingest                    # N = 100,000, a fresh Kafka
    .venv/bin/python -m benchmarks.ingest --bootstrap 127.0.0.1:9092

Writes ``benchmarks/results/ingest-<UTC time>.json``. It stops the broker it started; on a
broker given with ``--bootstrap`` it deletes the topics it created.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic

import engine.localkafka as localkafka
from benchmarks.backlog import PROGRESS_SECONDS, START_SECONDS, drain, say, steady_rate
from benchmarks.procstats import CANNOT_RUN, BenchError, Measured, Snapshot, window
from benchmarks.results_io import machine, write_result
from engine.admin import admin_client, create_topics
from engine.settings import Settings
from engine.supervise import WorkerProcess
from topics.catalogue import TopicNames

ANONYMOUS_SHARE = 0.10
DUPLICATE_SHARE = 0.02
DUPLICATE_REACH = 200
"""A duplicate re-sends one of the last 200 records: close enough that its customer still
remembers the id (SEGUE_DEDUP_MAX_IDS), as with a producer retry."""
COMMIT_SECONDS = 2.0
"""The baseline's flush-and-commit interval; Faust's broker_commit_interval is 2.8 s."""
DEVICES = ("mobile", "desktop", "tablet")


@dataclass(frozen=True, slots=True)
class Workload:
    records: list[tuple[bytes, bytes]]
    """(key, value) in produce order, duplicates included."""
    anonymous: int
    duplicates: int


def make_workload(events: int, customers: int, seed: int) -> Workload:
    """``events`` page views of ``customers`` customers and customers / 5 anonymous visitors."""
    rng = random.Random(seed)
    visitors = max(1, customers // 5)
    base_ms = time.time_ns() // 1_000_000 - events  # all in the past, one per millisecond
    records: list[tuple[bytes, bytes]] = []
    anonymous = duplicates = 0
    for i in range(events):
        if records and rng.random() < DUPLICATE_SHARE:
            records.append(records[-rng.randint(1, min(len(records), DUPLICATE_REACH))])
            duplicates += 1
            continue
        doc: dict[str, object] = {"event_id": f"pv-{i:08d}", "type": "page_view"}
        if rng.random() < ANONYMOUS_SHARE:
            who = f"anon-{rng.randrange(visitors):05d}"
            doc["anonymous_id"] = who
            anonymous += 1
        else:
            who = f"c-{rng.randrange(customers):05d}"
            doc["customer_id"] = who
        doc |= {
            "time": base_ms + i,
            "url": f"/products/{rng.randrange(1000)}",
            "device": rng.choice(DEVICES),
            "session_id": f"s-{who}-{i // 2000}",
        }
        records.append((who.encode(), orjson.dumps(doc)))
    return Workload(records, anonymous, duplicates)


# --- setup ----------------------------------------------------------------------------


async def create_all(settings: Settings, baseline_topics: Sequence[str]) -> None:
    await create_topics(settings, report=lambda line: None)
    admin = admin_client(settings)
    await admin.start()
    try:
        new = [
            NewTopic(t, settings.partitions, settings.replication_factor) for t in baseline_topics
        ]
        await admin.create_topics(new)
    finally:
        await admin.close()


async def delete_created(settings: Settings, *, internal_only: bool = False) -> None:
    """Delete the topics of this run: the worker's internal ones and, unless
    ``internal_only``, those of its prefix."""
    internal = settings.app_id + "-"
    starts = (internal,) if internal_only else (settings.topic_prefix, internal)
    admin = admin_client(settings)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(starts)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


async def preload(
    bootstrap: str, topics: Sequence[str], records: Sequence[tuple[bytes, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=64 * 1024)
    await producer.start()
    try:
        for topic in topics:
            started = time.perf_counter()
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await producer.flush()
            await asyncio.gather(*futures)
            took = time.perf_counter() - started
            say(f"  preloaded {len(records):,} records into {topic} in {took:.1f} s")
    finally:
        await producer.stop()


# --- (a) baseline ---------------------------------------------------------------------


def run_baseline(
    bootstrap: str, source: str, sink: str, group: str, events: int, brokers: list[int]
) -> Measured:
    """The raw loop, in a process of its own (so its CPU and RSS are its alone), on
    uvloop's event loop, as the worker's."""
    return uvloop.run(_baseline(bootstrap, source, sink, group, events, brokers))


async def _baseline(
    bootstrap: str, source: str, sink: str, group: str, events: int, brokers: list[int]
) -> Measured:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # acks="all" as Faust's producer_acks default (-1), so both wait for the same ack.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    pid = os.getpid()
    try:
        done = 0
        samples: list[tuple[float, float]] = []
        pending: list[asyncio.Future[Any]] = []
        started = time.monotonic()
        first: Snapshot | None = None
        last_commit = next_report = 0.0
        while done < events:
            batches = await consumer.getmany(timeout_ms=1000)
            now = time.monotonic()
            if first is None:
                if not batches:
                    if now - started > START_SECONDS:
                        raise BenchError(f"baseline saw no record in {START_SECONDS:.0f} s")
                    continue
                first = Snapshot.take(pid, brokers)
                last_commit, next_report = now, now + PROGRESS_SECONDS
            for records in batches.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    out = {
                        "event_id": doc["event_id"],
                        "who": doc.get("customer_id") or doc.get("anonymous_id"),
                        "type": doc["type"],
                        "time": doc["time"],
                        "partition": rec.partition,
                        "offset": rec.offset,
                    }
                    pending.append(await producer.send(sink, orjson.dumps(out), key=rec.key))
                done += len(records)
            samples.append((now, done))
            if done >= events or now - last_commit >= COMMIT_SECONDS:
                # Every output handed over must be acked before its input offset is committed.
                await producer.flush()
                await asyncio.gather(*pending)
                pending.clear()
                await consumer.commit()
                last_commit = time.monotonic()
            if now >= next_report:
                rate = done / (now - first.wall)
                say(f"  baseline {done:>9,} / {events:,} events  {rate:>9,.0f}/s")
                next_report += PROGRESS_SECONDS
        assert first is not None
        end = Snapshot.take(pid, brokers)
        result = window(first, end, pid, done)
        result["steady_events_per_second"] = steady_rate(samples, events)
        return result
    finally:
        await producer.stop()
        await consumer.stop()


def measure_baseline(
    bootstrap: str, source: str, sink: str, group: str, events: int, brokers: list[int]
) -> Measured:
    # spawn, not fork: a fresh interpreter that never held the workload in memory.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        job = pool.submit(run_baseline, bootstrap, source, sink, group, events, brokers)
        return job.result()


# --- (b) the Segue worker -------------------------------------------------------------


SCRAPE_SECONDS = 0.5
"""How often the worker's /metrics is read while it drains its backlog. A scrape costs
the worker 2-3 ms of its one core (the whole exposition is rendered): ten a second are
2-3% of that core, where Prometheus scrapes every 15 s. The start and the
end of the count are both up to this late, so the events/s lose little (a 20 s drain:
about 1%)."""


def scrape(port: int) -> dict[str, float] | None:
    """Every metric of the worker's /metrics summed over its series; None if not serving."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = series.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def measure_segue(settings: Settings, events: int, brokers: list[int], log_path: Path) -> Measured:
    worker = WorkerProcess(settings, log_path)
    launched = time.monotonic()
    worker.start()
    assert worker.proc is not None

    def count() -> float:
        return (scrape(settings.web_port) or {}).get("segue_events_consumed_total", 0.0)

    def check() -> str | None:
        return None if worker.alive else "the worker exited"

    try:
        try:
            result = drain(
                "segue", worker.proc.pid, events, brokers, count, check, launched, SCRAPE_SECONDS
            )
        except BenchError as err:
            raise BenchError(f"{err}\n{worker.log_tail()}") from None
        final = scrape(settings.web_port) or {}
        result |= {
            "duplicates_dropped": int(final.get("segue_duplicates_dropped_total", 0)),
            "dead_letters": int(final.get("segue_dead_letters_total", 0)),
            "decisions": int(final.get("segue_decisions_total", 0)),
        }
        return result
    finally:
        worker.stop()


def ratio(segue: Measured, base: Measured, key: str) -> float | None:
    a, b = segue[key], base[key]
    return round(a / b, 4) if a is not None and b is not None else None


# --- the run --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(events: int, customers: int, seed: int, bootstrap: str | None) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="segue-bench-ingest-"))
    kafka_dir = tmp / "kafka"
    settings = replace(
        Settings(),
        topic_prefix=f"bench{tag}.",
        app_id=f"segue-bench-{tag}",
        data_dir=tmp,
        cache_dir=Settings.from_env().cache_dir,
        web_port=free_port(),
    )
    baseline_in = f"{settings.topic_prefix}baseline.in"
    baseline_out = f"{settings.topic_prefix}baseline.out"
    brokers: list[int] = []
    external = bootstrap is not None
    try:
        if bootstrap is None:
            say("starting a local Apache Kafka")
            localkafka.start(kafka_dir, cache_dir=settings.cache_dir, progress=say)
            cluster = localkafka.status(kafka_dir)
            assert cluster is not None
            bootstrap = cluster.bootstrap
            brokers = [n.pid for n in cluster.nodes if n.running]
        settings = replace(settings, kafka_bootstrap=bootstrap)
        say(f"broker {bootstrap}; topic prefix {settings.topic_prefix}")
        asyncio.run(create_all(settings, [baseline_in, baseline_out]))
        work = make_workload(events, customers, seed)
        say(
            f"workload: {events:,} page views, {customers:,} customers, "
            f"{work.anonymous:,} anonymous, {work.duplicates:,} duplicates"
        )
        web = TopicNames(settings.topic_prefix).source("web")
        asyncio.run(preload(bootstrap, [baseline_in, web], work.records))

        say("(a) baseline: raw aiokafka consume, transform, produce")
        group = f"bench-baseline-{tag}"
        base = measure_baseline(bootstrap, baseline_in, baseline_out, group, events, brokers)
        say(f"  baseline {base['events_per_second']:,.0f} events/s")

        say(f"(b) segue worker on a backlog of {events:,} (log: {tmp / 'worker.log'})")
        segue = measure_segue(settings, events, brokers, tmp / "worker.log")
        say(f"  segue    {segue['events_per_second']:,.0f} events/s")
        if segue["dead_letters"]:
            say(f"  warning: {segue['dead_letters']} events were dead-lettered")
        if segue["duplicates_dropped"] != work.duplicates:
            say(f"  note: {segue['duplicates_dropped']} dropped of {work.duplicates} re-sent")
    finally:
        if external:
            try:
                asyncio.run(delete_created(settings))
            except Exception as err:  # the run's own error, if any, matters more
                say(f"could not delete the topics of {settings.topic_prefix}: {err}")
        else:
            localkafka.stop(kafka_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "ingest",
        "events": events,
        "customers": customers,
        "anonymous_events": work.anonymous,
        "duplicate_events": work.duplicates,
        "partitions": settings.partitions,
        "broker": "external" if external else "local, started by the run",
        "baseline": base,
        "segue_ingest": segue,
        "ratio_segue_to_baseline": ratio(segue, base, "events_per_second"),
        "ratio_steady_segue_to_baseline": ratio(segue, base, "steady_events_per_second"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="use this broker instead of starting one"
    )
    args = parser.parse_args()
    if args.events < 1 or args.customers < 1:
        parser.error("--events and --customers must be at least 1")
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        result = run(args.events, args.customers, args.seed, args.bootstrap)
    except CANNOT_RUN as err:
        sys.exit(f"benchmark failed: {err}")
    result["machine"] = machine(
        load_average_1min_at_start=load,
        kafka=localkafka.KAFKA_VERSION if args.bootstrap is None else "external",
    )
    result["run_seconds"] = round(time.monotonic() - started, 1)
    write_result("ingest", result)


if __name__ == "__main__":
    main()
