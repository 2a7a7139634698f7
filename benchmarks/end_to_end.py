"""``make bench``: three paths on one fresh local broker, at saturation and at fixed loads.

(a) ``baseline``: a raw aiokafka consume-transform-produce loop (benchmarks/rawloop.py):
    orjson-parse, a small dict state update, a decision-like record out, no ack awaited
    per send, flush before commit.
(b) ``segue_ingest``: ``segue worker`` on ``page_view`` events, which are no decision
    points: parse, validate, dedupe, profile update (benchmarks/ingest.py's workload).
(c) ``segue_decide``: ``segue worker`` on decision points (``web.product_view``,
    ``web.search``, ``web.add_to_cart``, ``web.checkout_started`` of known customers from
    models/simulator.py's Population), each decided with the River model and written to
    the decision log. No outcomes are sent back, so the model scores but does not learn.

(a) and (c) get the same events. For each path:

1. **Saturation**: a backlog preloaded before anything runs, drained by a fresh consumer;
   events/s over the whole drain and steady (between 10% and 90% of it), CPU and peak RSS
   of the path's process, the broker's CPU, the rest of the machine's. After every path's
   fixed loads, each backlog is drained DRAINS - 1 more times, each time by a consumer of
   its own (its own group, and a worker its own tables); the result is the drain with the
   median steady rate, every drain's steady rate kept beside it.
2. **Fixed loads**: 1,000/s, 5,000/s and 80% of the first drain's steady rate, ascending,
   each for RUN_SECONDS from an open-loop generator (benchmarks/loadgen.py), latency as
   defined in benchmarks/openloop.py: from the generator's send to the output produced
   (appended to its topic, the broker's stamp) and to its arrival at a measuring
   consumer, the first WARMUP_SECONDS left out. A load the path does not
   sustain gets no latency figures; the loads above it are not run.
   (b) produces no decisions: one event in MARKER_EVERY is a ``web.search`` by a known
   customer, a marker whose decision times the ingest stream it queues in; its latency
   is that of the markers only, and the CPU that of the mixed stream.

    .venv/bin/python -m benchmarks.end_to_end          # about 6-7 minutes here (make bench)
    .venv/bin/python -m benchmarks.end_to_end --paths segue_decide --no-fixed-loads
                                                       # (c) draining its backlog only
    .venv/bin/python -m benchmarks.end_to_end --paths segue_decide --rates 1000
                                                       # (c): its backlog, then 1,000/s

Writes ``benchmarks/results/end_to_end-<UTC time>.json`` and prints the tables
(benchmarks/bench_tables.py); stops the broker it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

import engine.localkafka as localkafka
from benchmarks.backlog import drain, say
from benchmarks.bench_tables import NAMES, markdown
from benchmarks.ingest import (
    create_all,
    delete_created,
    free_port,
    make_workload,
    measure_segue,
    preload,
)
from benchmarks.loadgen import Template, fixed_load, stamp_on_append
from benchmarks.openloop import fixed_rates, template_rest
from benchmarks.procstats import CANNOT_RUN, Measured
from benchmarks.rawloop import RawLoop
from benchmarks.results_io import machine, speed_index_ms, write_result
from benchmarks.workers import start_worker, stop_worker
from engine.actions import TRIGGERS
from engine.settings import Settings
from models.simulator import Population
from topics.catalogue import TopicNames

RUN_SECONDS = 20.0
"""Length of each fixed-load run, warm-up included."""
MARKER_EVERY = 20
CUSTOMERS = 5_000
DECIDE_EVENTS = 100_000
"""The decide path's backlog: some 20 s of draining, so its steady rate is the worker's
steady state. A changed profile is written ``SEGUE_PROFILE_WRITE_DELAY_MS`` after its
first change (engine/profile_cache.py): a 30,000-event drain (6 s) measured mostly the
seconds before the first writes, and wrote 0.13 profiles per event where a long drain
writes one per customer per delay."""
DRAINS = 3
"""Backlog drains per path, each by a fresh consumer; the tables show the drain with the
median steady rate. This machine's speed moves by 10% or more between runs a minute
apart (``core_throughput --workload decide`` alone, eight runs in a row: 141-178 µs per
event), so one drain is one draw of it: the median of three is not moved by one slow
or fast stretch, and the spread of the three shows how far the next run may land.
The drains after the first run at the end, after every fixed load, so the loads meet
the broker as one drain of each backlog leaves it, as before there were more (with all
three drains before the loads, four runs gave p99 58, 42, 43 and 36 ms at (c)'s
1,000/s, seven runs of one drain 29-37: too few to tell, and no reason to find out)."""
TEMPLATES = 20_000
"""Distinct events a fixed-load run cycles through (each sent with a fresh id and time)."""
PATHS = ("baseline", "segue_ingest", "segue_decide")


# --- workloads ------------------------------------------------------------------------


def decision_points(pop: Population, n: int, start_ms: int) -> list[dict[str, Any]]:
    """The next ``n`` web decision points of ``pop``'s customers, one per millisecond."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        for ev in pop.activity(start_ms + len(out)):
            if ev.pop("source") == "web" and f"web.{ev['type']}" in TRIGGERS:
                out.append(ev)
    return out[:n]


def as_records(docs: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(str(d["customer_id"]).encode(), orjson.dumps(d)) for d in docs]


def as_template(doc: dict[str, Any], key: bytes, *, answered: bool) -> Template:
    doc = {k: v for k, v in doc.items() if k not in ("event_id", "time")}
    return Template(key, template_rest(doc, orjson.dumps(doc)), answered)


def ingest_templates(customers: int, seed: int) -> list[Template]:
    """Page views as benchmarks.ingest makes them, one in MARKER_EVERY a marker search."""
    work = make_workload(TEMPLATES, customers, seed)
    out = []
    for i, (key, value) in enumerate(work.records):
        if i % MARKER_EVERY == MARKER_EVERY - 1:
            who = f"c-{i % customers:05d}"
            marker = {"customer_id": who, "type": "search", "query": "shoes", "device": "mobile"}
            out.append(as_template(marker, who.encode(), answered=True))
        else:
            out.append(as_template(orjson.loads(value), key, answered=False))
    return out


# --- the paths ------------------------------------------------------------------------


def loads(
    label: str,
    saturation: dict[str, Any],
    offer: Callable[[str, int], dict[str, Any]],
    seconds: float,
    rates: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """The fixed loads of one path, ascending; those above the first it does not sustain
    are not run (a path that falls behind at one load falls behind at a higher one)."""
    runs: list[dict[str, Any]] = []
    failed: int | None = None
    chosen = sorted(rates) or fixed_rates(saturation.get("steady_events_per_second"))
    for i, rate in enumerate(chosen):
        if failed is not None:
            why = f"not run: {failed:,}/s was not sustained"
            runs.append({"offered_per_second": rate, "sustained": False, "verdict": why})
            continue
        say(f"  {label} at {rate:,}/s offered for {seconds:.0f} s")
        run = offer(f"{label[0]}{i}", rate)
        runs.append(run)
        if not run["sustained"]:
            failed = rate
        lat, got = run.get("produced") or {}, run.get("latency") or {}
        say(
            f"  {label} at {rate:,}/s: {run['verdict']}"
            + (f"; produced p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms" if lat else "")
            + (f"; received p99 {got['p99_ms']} ms" if got else "")
        )
    return runs


def steady(drained: dict[str, Any]) -> str:
    """A drain's steady rate as the progress lines give it.

    >>> steady({"steady_events_per_second": 5012.5}), steady({"steady_events_per_second": None})
    ('5,012.5 events/s steady', 'no steady rate (the drain was too short to tell one)')
    """
    rate = drained["steady_events_per_second"]
    if rate is None:
        return "no steady rate (the drain was too short to tell one)"
    return f"{rate:,} events/s steady"


def median_drain(drains: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The drain with the median steady rate (of an even number, the lower middle one),
    with every drain's steady rate, in the order they ran.

    >>> median_drain([{"steady_events_per_second": r} for r in (5.0, None, 7.0, 6.0)])
    {'steady_events_per_second': 5.0, 'drains_steady_events_per_second': [5.0, None, 7.0, 6.0]}
    """
    ranked = sorted(drains, key=lambda d: d["steady_events_per_second"] or 0.0)
    rates = [d["steady_events_per_second"] for d in drains]
    return ranked[(len(ranked) - 1) // 2] | {"drains_steady_events_per_second": rates}


def raw_drain(loop: RawLoop, events: int, brokers: Sequence[int]) -> tuple[int, Measured]:
    """Start the raw loop and drain its backlog of ``events``: its pid and the drain."""
    launched = time.monotonic()
    pid = loop.start()
    return pid, drain("baseline", pid, events, brokers, loop.count, loop.check, launched)


def run(
    events: dict[str, int],
    customers: int,
    seed: int,
    bootstrap: str | None,
    seconds: float,
    paths: Sequence[str] = PATHS,
    rates: Sequence[int] = (),
    drains: int = DRAINS,
) -> dict[str, Any]:
    """Measure ``paths`` (all by default) at ``rates`` (default: 1,000/s, 5,000/s and 80%
    of each path's first drain), and each path's saturation as the median of ``drains``
    drains; ``seconds`` 0 runs no fixed loads."""
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="segue-bench-e2e-"))
    kafka_dir = tmp / "kafka"
    base = replace(
        Settings(),
        topic_prefix=f"e2e{tag}.",
        app_id=f"segue-e2e-{tag}",
        data_dir=tmp,
        cache_dir=Settings.from_env().cache_dir,
    )
    apps = {
        path: replace(
            base,
            topic_prefix=f"{base.topic_prefix}{path[6:]}.",
            app_id=f"{base.app_id}-{path[6:]}",
            web_port=free_port(),
        )
        for path in PATHS[1:]
    }
    raw_in, raw_out = f"{base.topic_prefix}baseline.in", f"{base.topic_prefix}baseline.out"
    brokers: list[int] = []
    result: dict[str, Any] = {"benchmark": "end_to_end", "partitions": base.partitions}
    external = bootstrap is not None
    try:
        if bootstrap is None:
            say("starting a local Apache Kafka")
            localkafka.start(kafka_dir, cache_dir=base.cache_dir, progress=say)
            cluster = localkafka.status(kafka_dir)
            assert cluster is not None
            bootstrap = cluster.bootstrap
            brokers = [n.pid for n in cluster.nodes if n.running]
        apps = {k: replace(s, kafka_bootstrap=bootstrap) for k, s in apps.items()}
        say(f"broker {bootstrap}; topic prefix {base.topic_prefix}; logs in {tmp}")
        asyncio.run(create_all(apps["segue_ingest"], [raw_in, raw_out]))
        asyncio.run(create_all(apps["segue_decide"], []))

        now_ms = time.time_ns() // 1_000_000
        pop = Population(customers, seed=seed)
        backlog = as_records(decision_points(pop, events["decide"], now_ms - events["decide"]))
        decide_templates = [
            as_template(d, str(d["customer_id"]).encode(), answered=True)
            for d in decision_points(pop, TEMPLATES, now_ms)
        ]
        ingest = make_workload(events["ingest"], customers, seed)
        raw_backlog = (backlog * (events["baseline"] // len(backlog) + 1))[: events["baseline"]]
        say(
            f"workloads: {len(raw_backlog):,} decision points for the baseline, "
            f"{events['ingest']:,} page views ({ingest.anonymous:,} anonymous, "
            f"{ingest.duplicates:,} re-sent), {len(backlog):,} decision points for the worker"
        )
        web = {k: TopicNames(s.topic_prefix).source("web") for k, s in apps.items()}
        asyncio.run(preload(bootstrap, [raw_in], raw_backlog))
        asyncio.run(preload(bootstrap, [web["segue_ingest"]], ingest.records))
        asyncio.run(preload(bootstrap, [web["segue_decide"]], backlog))

        def offer(
            label: str, pid: int, in_topic: str, out_topic: str, templates: list[Template]
        ) -> Callable[[str, int], dict[str, Any]]:
            asyncio.run(stamp_on_append(str(bootstrap), out_topic))

            def go(run_id: str, rate: int) -> dict[str, Any]:
                return fixed_load(
                    f"{label} {rate:,}/s",
                    bootstrap=str(bootstrap),
                    in_topic=in_topic,
                    out_topic=out_topic,
                    partitions=base.partitions,
                    templates=templates,
                    run=run_id,
                    rate=rate,
                    seconds=seconds,
                    pid=pid,
                    brokers=brokers,
                )

            return go

        if "baseline" in paths:
            say(f"(a) baseline: raw aiokafka loop on a backlog of {len(raw_backlog):,}")
            loop = RawLoop(bootstrap, raw_in, raw_out, f"bench-raw-{tag}")
            try:
                pid, sat = raw_drain(loop, len(raw_backlog), brokers)
                say(f"  baseline {steady(sat)}")
                go = offer("baseline", pid, raw_in, raw_out, decide_templates)
                runs = loads("baseline", sat, go, seconds, rates) if seconds else []
            finally:
                loop.stop()
            result["baseline"] = {
                "events": len(raw_backlog),
                "saturation": sat,
                "fixed_loads": runs,
            }

        ingest_tpl = ingest_templates(customers, seed + 1)
        for path, label, n, templates in (
            ("segue_ingest", "(b) segue ingest", events["ingest"], ingest_tpl),
            ("segue_decide", "(c) segue decide", events["decide"], decide_templates),
        ):
            if path not in paths:
                continue
            settings = apps[path]
            log = tmp / f"worker-{path}.log"
            say(f"{label}: a worker on a backlog of {n:,} (log: {log})")
            sat = measure_segue(settings, n, brokers, log)
            say(f"  {path} {steady(sat)}")
            if not seconds:
                result[path] = {"events": n, "saturation": sat, "fixed_loads": []}
                continue
            started = start_worker(settings, log, path, brokers)
            assert started.worker.proc is not None
            decisions = TopicNames(settings.topic_prefix).decision_log
            go = offer(path, started.worker.proc.pid, web[path], decisions, templates)
            try:
                runs = loads(path, sat, go, seconds, rates)
            finally:
                stop_worker(started)
            result[path] = {"events": n, "saturation": sat, "fixed_loads": runs}

        # The further drains (DRAINS), after every fixed load.
        for path in [p for p in PATHS if p in result] if drains > 1 else []:
            n = result[path]["events"]
            say(f"{NAMES[path]}: {drains - 1} more drains of its backlog of {n:,}")
            measured = [result[path]["saturation"]]
            for i in range(1, drains):
                if path == "baseline":
                    # A group of its own, from the earliest offset.
                    loop = RawLoop(bootstrap, raw_in, raw_out, f"bench-raw-{tag}-{i}")
                    try:
                        _, one = raw_drain(loop, n, brokers)
                    finally:
                        loop.stop()
                else:
                    # A group and tables of its own; its topics are no one's after it.
                    each = replace(
                        apps[path], app_id=f"{apps[path].app_id}-{i}", web_port=free_port()
                    )
                    one = measure_segue(each, n, brokers, tmp / f"worker-{path}.{i}.log")
                    asyncio.run(delete_created(each, internal_only=True))
                say(f"  {path} {steady(one)}")
                measured.append(one)
            result[path]["saturation"] = median_drain(measured)
        result |= {"marker_every": MARKER_EVERY, "run_seconds_per_load": seconds}
    finally:
        if not external:
            localkafka.stop(kafka_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-events", type=int, default=150_000)
    parser.add_argument("--ingest-events", type=int, default=50_000)
    parser.add_argument(
        "--decide-events",
        type=int,
        default=DECIDE_EVENTS,
        help="the decide path's backlog (default: %(default)s)",
    )
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument(
        "--seconds", type=float, default=RUN_SECONDS, help="length of each fixed-load run"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--drains",
        type=int,
        default=DRAINS,
        help="backlog drains per path; the median one is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=list(PATHS),
        help="measure only these paths (default: all three)",
    )
    parser.add_argument(
        "--rates",
        nargs="+",
        type=int,
        default=[],
        metavar="N",
        help="offered loads in events/s (default: 1,000, 5,000 and 80%% of saturation)",
    )
    parser.add_argument(
        "--no-fixed-loads",
        action="store_true",
        help="saturation only: drain each backlog, run no fixed loads",
    )
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="use this broker instead of starting one"
    )
    args = parser.parse_args()
    events = {
        "baseline": args.baseline_events,
        "ingest": args.ingest_events,
        "decide": args.decide_events,
    }
    if min(events.values()) < 1000 or args.customers < 1:
        parser.error("each backlog needs at least 1,000 events and one customer")
    if args.drains < 1:
        parser.error("--drains must be 1 or more")
    started, load, speed = time.monotonic(), os.getloadavg(), speed_index_ms()
    try:
        seconds = 0.0 if args.no_fixed_loads else args.seconds
        result = run(
            events,
            args.customers,
            args.seed,
            args.bootstrap,
            seconds,
            args.paths,
            args.rates,
            args.drains,
        )
    except CANNOT_RUN as err:
        sys.exit(f"benchmark failed: {err}")
    result["machine"] = machine(
        load_average_1min_at_start=load[0],
        load_average_1min_at_end=os.getloadavg()[0],
        speed_index_ms_at_start=speed,
        kafka=localkafka.KAFKA_VERSION if args.bootstrap is None else "external",
    )
    result["run_seconds"] = round(time.monotonic() - started, 1)
    out = write_result("end_to_end", result)
    print()
    print(markdown(result, source=f"results/{out.name}"))


if __name__ == "__main__":
    main()
