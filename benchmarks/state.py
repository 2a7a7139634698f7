"""Per-customer state: update throughput, bytes per customer, memory and recovery time.

For each customer count N (100,000 and 1,000,000 unless ``--customers`` says otherwise),
on one local Apache Kafka started by the run:

1. **Core updates/s.** The pure core (:class:`engine.pipeline.Core`, no Kafka) applies
   100,000 customers' next simulated activity step to a table of N seeded profiles held
   as the worker holds them (encoded bytes, decoded on read, encoded on write).
2. **Seed.** N realistic profiles (``benchmarks/seeding.py``) go straight into a new
   app's ``<app_id>-profiles-changelog``, created as Faust would create it (compacted,
   ``SEGUE_PARTITIONS`` partitions).
3. **Starts.** ``segue worker`` processes, timed from launch to ``/readyz`` answering 200
   (Faust starts its web server only once the first recovery is done), in this order:
   ``empty``: another app id, nothing in its changelog: the cost of starting at all;
   ``wiped``: the seeded app with no data dir: recovery reads the whole changelog; the
   worker is then killed (SIGKILL) as soon as it is ready, a crash right after recovery;
   ``kept_after_crash``: the next start on what that worker left: RocksDB replays its
   write-ahead log, and the group waits for the dead member's session to expire;
   ``kept``: a start after that worker stopped cleanly (SIGTERM).
   Each records the worker's own ``segue_recovery_seconds``, its RSS when ready and its
   peak RSS, and the time of the Faust log lines that mark each phase.
4. **Check.** Once ``kept_after_crash`` is ready, one ``page_view`` per partition to a
   seeded customer: the changelog record the worker then writes must equal, byte for byte,
   what the core makes of the seeded profile and that event (``changelog_check.probe``).
5. **Disk.** The profiles table's RocksDB directories (SST files, write-ahead log, manifest)
   as the ``kept_after_crash`` worker left them after a clean stop, and after a RocksDB
   flush and full compaction done by this run with Faust's RocksDB options once the
   ``kept`` worker has stopped; divided by N. The compaction also counts the keys: all N
   must be there.
6. **Worker updates/s** (only for N = 100,000, ``--worker-customers``): the same activity
   steps as in 1 preloaded into the input topics, then a worker with the kept state
   started on that backlog; measured as ``benchmarks.ingest`` measures it.

Before all that, a self-check runs a real worker on a few simulated customers and
compares its changelog with what this run writes (key, value, headers, partition) and
the changelog topic Faust created with the one this run creates.

    .venv/bin/python -m benchmarks.state                          # N = 100,000 and 1,000,000
    .venv/bin/python -m benchmarks.state --customers 100000

Writes ``benchmarks/results/state-<UTC time>.json``; stops the broker it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from faust.stores.rocksdb import RocksDBOptions, Store

import engine.localkafka as localkafka
from benchmarks.changelog_check import probe, self_check
from benchmarks.ingest import free_port, measure_segue, preload
from benchmarks.procstats import CANNOT_RUN, BenchError
from benchmarks.results_io import machine, write_result
from benchmarks.seeding import (
    ProfileStore,
    Templates,
    activity,
    changelog_topic,
    core_like_worker,
    create_changelog,
    customer_id,
    make_templates,
    say,
    write_changelog,
)
from benchmarks.workers import start_worker, stop_worker
from engine.admin import create_topics
from engine.app import PROFILE_TABLE
from engine.records import Record, expected_partition
from engine.settings import Settings
from topics.catalogue import TopicNames

TEMPLATES = 3000
CORE_STEPS = 100_000
"""Customers whose next activity step the core applies in (1), per N."""


def table_dirs(settings: Settings) -> list[Path]:
    """The profiles table's RocksDB directories, one per partition (Faust's layout for
    app version 1: ``<datadir>/v1/tables/<table>-<partition>.db``)."""
    tables = settings.data_dir / f"worker-{settings.app_id}" / "v1" / "tables"
    return sorted(tables.glob(f"{PROFILE_TABLE}-*.db"))


# --- (1) the core ---------------------------------------------------------------------


def next_steps(customers: int, names: TopicNames, seed: int) -> list[tuple[str, bytes, bytes]]:
    """The next activity step of CORE_STEPS customers (all when fewer), as records."""
    rng = random.Random(seed)
    chosen = [customer_id(i) for i in rng.sample(range(customers), min(CORE_STEPS, customers))]
    return activity(chosen, names, now_ms=time.time_ns() // 1_000_000, seed=seed)


def measure_core(
    templates: Templates, customers: int, partitions: int, names: TopicNames, seed: int
) -> dict[str, Any]:
    """The core applying CORE_STEPS customers' next step to a table of ``customers``."""
    records = next_steps(customers, names, seed)
    core = core_like_worker(replace(Settings(), topic_prefix=names.prefix, partitions=partitions))
    store = ProfileStore(lambda key: templates.profile_of(key, partitions))
    offsets: dict[tuple[str, int], int] = {}
    now_ms = time.time_ns() // 1_000_000
    decided = updates = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for topic, key, value in records:
        partition = expected_partition(key, partitions)
        offset = offsets[topic, partition] = offsets.get((topic, partition), -1) + 1
        result = core.ingest(Record(topic, partition, offset, key, value, []), store, now_ms=now_ms)
        updates += store.apply(result)
        decided += result.decision is not None
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if updates != len(records):
        raise BenchError(f"core: {updates} profile writes for {len(records)} events")
    return {
        "events": len(records),
        "customers_touched": min(CORE_STEPS, customers),
        "decisions": decided,
        "wall_seconds": round(wall, 3),
        "updates_per_second": round(updates / wall, 1),
        "cpu_microseconds_per_update": round(cpu / updates * 1e6, 1),
    }


# --- (5) disk -------------------------------------------------------------------------


def dir_bytes(dirs: list[Path]) -> dict[str, int]:
    """Apparent size (sum of file sizes) and allocated size (blocks) of ``dirs``."""
    apparent = allocated = 0
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file():
                st = f.stat()
                apparent += st.st_size
                allocated += st.st_blocks * 512
    return {"apparent": apparent, "allocated": allocated}


def compact(dirs: list[Path]) -> int:
    """Flush and fully compact each partition's RocksDB, opened with the options Faust
    opens it with (bloom filters included); the number of table keys."""
    keys = 0
    for d in dirs:
        db = rocksdict.Rdict(str(d), options=RocksDBOptions().as_options())
        try:
            db.flush()
            db.compact_range(None, None)
            # Rdict has no __iter__; Faust keeps the partition's changelog offset under a key.
            keys += sum(1 for k in db.keys() if k != Store.offset_key)  # noqa: SIM118
        finally:
            db.close()
    return keys


def per_customer(sizes: dict[str, int], customers: int) -> dict[str, float]:
    return {f"{k}_bytes_per_customer": round(v / customers, 1) for k, v in sizes.items()}


# --- one customer count ---------------------------------------------------------------


def run_count(
    base: Settings,
    templates: Templates,
    customers: int,
    tmp: Path,
    *,
    worker_customers: int,
    brokers: list[int],
    seed: int,
) -> dict[str, Any]:
    tag = f"n{customers}"
    settings = replace(
        base, topic_prefix=f"{base.topic_prefix}{tag}.", app_id=f"{base.app_id}-{tag}"
    )
    names = TopicNames(settings.topic_prefix)
    out: dict[str, Any] = {"customers": customers}

    say(f"[{customers:,}] (1) the core on {min(CORE_STEPS, customers):,} customers' next step")
    out["core"] = measure_core(templates, customers, settings.partitions, names, seed)
    say(f"  core: {out['core']['updates_per_second']:,.0f} profile updates/s")

    say(f"[{customers:,}] (2) seeding {changelog_topic(settings)}")
    asyncio.run(create_topics(settings, report=lambda line: None))
    asyncio.run(create_changelog(settings))
    rows = (templates.for_customer(i, settings.partitions) for i in range(customers))
    out["seed"] = asyncio.run(
        write_changelog(settings.kafka_bootstrap, changelog_topic(settings), rows, customers)
    )
    say(
        f"  seeded {customers:,} profiles, {out['seed']['bytes'] / customers:,.0f} bytes each, "
        f"in {out['seed']['seconds']} s"
    )

    say(f"[{customers:,}] (3) starts: empty, wiped, kept after a crash, kept")
    log = tmp / f"worker-{tag}.log"
    empty = replace(settings, app_id=f"{settings.app_id}-empty")
    starts = {"empty": stop_worker(start_worker(empty, log, "empty", brokers))}
    shutil.rmtree(settings.data_dir / f"worker-{settings.app_id}", ignore_errors=True)
    # Killed as soon as it is ready: what it recovered is partly still only in RocksDB's
    # write-ahead log, and the group still counts it as a member until its session ends.
    starts["wiped"] = stop_worker(start_worker(settings, log, "wiped", brokers), kill=True)
    crashed = start_worker(settings, log, "kept after a crash", brokers)
    try:
        out["probe"] = probe(settings, templates, customers)
    finally:
        starts["kept_after_crash"] = stop_worker(crashed)
    dirs = table_dirs(settings)
    disk: dict[str, Any] = {"as_left": per_customer(dir_bytes(dirs), customers)}
    starts["kept"] = stop_worker(start_worker(settings, log, "kept", brokers))
    out["starts"] = starts

    say(f"[{customers:,}] (5) disk: flush and full compaction")
    began = time.monotonic()
    keys = compact(dirs)
    if keys < customers:
        raise BenchError(f"the profiles table holds {keys:,} keys, not {customers:,}")
    disk["compacted"] = per_customer(dir_bytes(dirs), customers)
    disk |= {"keys": keys, "compaction_seconds": round(time.monotonic() - began, 1)}
    out["disk"] = disk
    say(f"  {keys:,} keys; bytes per customer {disk}")

    if customers == worker_customers:
        steps = min(CORE_STEPS, customers)
        say(f"[{customers:,}] (6) the worker on {steps:,} customers' next step")
        out["worker"] = measure_worker(settings, customers, brokers, log, seed)
    return out


def measure_worker(
    settings: Settings, customers: int, brokers: list[int], log: Path, seed: int
) -> dict[str, Any]:
    """The same records as measure_core, preloaded; a worker with kept state on them."""
    records = next_steps(customers, TopicNames(settings.topic_prefix), seed)
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for topic, key, value in records:
        by_topic.setdefault(topic, []).append((key, value))
    for topic, recs in by_topic.items():
        asyncio.run(preload(settings.kafka_bootstrap, [topic], recs))
    measured = measure_segue(settings, len(records), brokers, log)
    say(f"  worker: {measured['events_per_second']:,.0f} events/s")
    steps = min(CORE_STEPS, customers)
    return dict(measured) | {"events": len(records), "customers_touched": steps}


# --- the run --------------------------------------------------------------------------


def run(counts: list[int], worker_customers: int, seed: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="segue-bench-state-"))
    kafka_dir = tmp / "kafka"
    base = replace(
        Settings(),
        topic_prefix=f"state{tag}.",
        app_id=f"segue-state-{tag}",
        data_dir=tmp,
        cache_dir=Settings.from_env().cache_dir,
        web_port=free_port(),
    )
    result: dict[str, Any] = {"benchmark": "state", "partitions": base.partitions}
    try:
        say("starting a local Apache Kafka")
        localkafka.start(kafka_dir, cache_dir=base.cache_dir, progress=say)
        cluster = localkafka.status(kafka_dir)
        assert cluster is not None
        base = replace(base, kafka_bootstrap=cluster.bootstrap)
        brokers = [n.pid for n in cluster.nodes if n.running]
        say(f"broker {cluster.bootstrap}; worker logs in {tmp}")

        say("self-check: a worker's changelog against this run's")
        result["self_check"] = self_check(base, tmp, brokers)

        say(f"templates: {TEMPLATES:,} simulated histories through the core")
        templates = make_templates(
            TEMPLATES, base.partitions, end_ms=time.time_ns() // 1_000_000, seed=seed
        )
        sizes = templates.sizes()
        result["templates"] = {
            "count": len(sizes),
            "events": templates.events,
            "seconds": templates.seconds,
            "value_bytes_mean": round(sum(sizes) / len(sizes), 1),
            "value_bytes_median": sizes[len(sizes) // 2],
            "value_bytes_p90": sizes[len(sizes) * 9 // 10],
            "value_bytes_max": sizes[-1],
            "pending_share_of_bytes": pending_share(templates),
        }
        say(f"  {result['templates']}")
        result["runs"] = [
            run_count(
                base,
                templates,
                n,
                tmp,
                worker_customers=worker_customers,
                brokers=brokers,
                seed=seed,
            )
            for n in counts
        ]
    finally:
        localkafka.stop(kafka_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def pending_share(templates: Templates) -> float:
    """Share of the profiles' bytes spent on decisions awaiting their outcome."""
    total = pending = 0
    for group in templates.by_partition:
        for value in group:
            total += len(value)
            pending += len(orjson.dumps(orjson.loads(value).get("pending", [])))
    return round(pending / total, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers",
        default="100000,1000000",
        help="comma-separated customer counts (default 100000,1000000)",
    )
    parser.add_argument(
        "--worker-customers",
        type=int,
        default=100_000,
        help="the count whose updates also go through a worker (default 100000)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        counts = [int(c.replace("_", "")) for c in args.customers.split(",")]
    except ValueError:
        parser.error("--customers takes comma-separated integers")
    if any(c < 1 for c in counts):
        parser.error("customer counts must be at least 1")
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        result = run(counts, args.worker_customers, args.seed)
    except CANNOT_RUN as err:
        sys.exit(f"benchmark failed: {err}")
    result["machine"] = machine(
        load_average_1min_at_start=load,
        kafka=localkafka.KAFKA_VERSION,
        rocksdict=version("rocksdict"),
    )
    result["run_seconds"] = round(time.monotonic() - started, 1)
    write_result("state", result)


if __name__ == "__main__":
    main()
