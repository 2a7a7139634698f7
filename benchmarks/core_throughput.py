"""Throughput of the functional core alone: parse, profile update, decide, learn.

No Kafka and no Faust: this is the ceiling the worker's per-event overhead is measured
against. Two workloads:

- ``mixed`` (the default): simulated customers send events of every kind and answer
  every decision with an outcome, so the model learns.
- ``decide``: exactly what ``make bench`` path (c) gives a worker, web decision points
  of known customers (``benchmarks.end_to_end.decision_points``), through the core a
  worker with default settings runs (``build_core``: three partitions, the worker's
  policy), each record on its key's partition, profiles stored as bytes and decoded
  again as the worker's table does, the clock 5 ms after each event's time. The first
  ``--warmup`` events (default 10,000: every customer's first login, caches, the
  profiles' growth) are run but not counted.

    .venv/bin/python -m benchmarks.core_throughput --events 50000
    .venv/bin/python -m benchmarks.core_throughput --workload decide --events 20000

Writes ``benchmarks/results/core_throughput-<UTC time>.json`` (``core_decide-`` for
``decide``).
"""

from __future__ import annotations

import argparse
import time

import orjson

from benchmarks.end_to_end import decision_points
from benchmarks.results_io import machine, write_result
from engine.app import build_core
from engine.decide import DecideConfig
from engine.journey_loader import default_catalogue
from engine.journeys import Catalogue
from engine.pipeline import Core
from engine.profile import Profile
from engine.records import Record, expected_partition
from engine.settings import Settings
from models.policy import LogisticHeads
from models.simulator import Population
from topics.catalogue import TopicNames


class DictState:
    """The worker's tables as plain dicts."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.identities: dict[str, str] = {}
        self.catalogue = default_catalogue()

    def profile(self, key: str) -> Profile | None:
        return self.profiles.get(key)

    def linked(self, anonymous_id: str) -> str | None:
        return self.identities.get(anonymous_id)


def run(events: int, customers: int, seed: int) -> dict[str, object]:
    names = TopicNames("cx.")
    pop = Population(customers, seed=seed, time_scale=0)
    state = DictState()
    policy = LogisticHeads()
    core = Core(policy, names, "identity", "stitched", "timers", DecideConfig())
    now_ms = 1_800_000_000_000
    offsets: dict[str, int] = {}
    pending: list[tuple[str, dict[str, object]]] = []
    done = decided = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while done < events:
        batch = pop.activity(now_ms) if not pending else [pending.pop()[1]]
        for ev in batch:
            source = str(ev.pop("source"))
            topic = names.source(source)
            offsets[topic] = offsets.get(topic, -1) + 1
            key = str(ev["customer_id"]).encode()
            rec = Record(topic, 0, offsets[topic], key, orjson.dumps(ev))
            result = core.ingest(rec, state, now_ms=now_ms)
            for name, profile in result.writes.items():
                if profile is not None:
                    state.profiles[name] = profile
            if result.decision is not None and result.decision.acts:
                decided += 1
                answers = pop.respond(result.decision.to_dict(), now_ms)
                pending += [("outcome", ev) for ev in reversed(answers)]
            done += 1
        now_ms += 5
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "benchmark": "core_throughput",
        "events": done,
        "decisions_acting": decided,
        "customers": customers,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_second": round(done / wall, 1),
        "cpu_microseconds_per_event": round(cpu / done * 1e6, 1),
        "model_updates": policy.updates,
    }


class ByteState:
    """The worker's tables as dicts, profiles kept as their stored bytes."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.profiles: dict[str, bytes] = {}
        self.identities: dict[str, str] = {}
        self.catalogue = catalogue

    def profile(self, key: str) -> Profile | None:
        raw = self.profiles.get(key)
        return None if raw is None else Profile.decode(raw)

    def linked(self, anonymous_id: str) -> str | None:
        return self.identities.get(anonymous_id)


def run_decide(events: int, customers: int, seed: int, warmup: int) -> dict[str, object]:
    """CPU per web decision point: ingest, decide, and the profile's encode and decode."""
    settings = Settings()
    core = build_core(settings)
    state = ByteState(default_catalogue())
    topic = core.names.source("web")
    start_ms = 1_800_000_000_000
    docs = decision_points(
        Population(customers, seed=seed, time_scale=0), warmup + events, start_ms
    )
    offsets: dict[int, int] = {}
    work: list[tuple[Record, int]] = []
    for doc in docs:
        # Encoded before the clock starts: the worker receives bytes.
        key = str(doc["customer_id"]).encode()
        partition = expected_partition(key, settings.partitions)
        offsets[partition] = offsets.get(partition, -1) + 1
        rec = Record(topic, partition, offsets[partition], key, orjson.dumps(doc))
        work.append((rec, int(doc["time"]) + 5))
    statuses: dict[str, int] = {}
    acting = 0
    cpu0 = wall0 = 0.0
    for i, (rec, now_ms) in enumerate(work):
        if i == warmup:
            cpu0, wall0 = time.process_time(), time.perf_counter()
        result = core.ingest(rec, state, now_ms=now_ms)
        for name, profile in result.writes.items():
            if profile is None:
                state.profiles.pop(name, None)
            else:
                state.profiles[name] = profile.encode()
        state.identities.update(result.links)
        if i >= warmup:
            statuses[result.status] = statuses.get(result.status, 0) + 1
            acting += result.decision is not None and result.decision.acts
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "benchmark": "core_decide",
        "workload": "decide",
        "events": events,
        "warmup_events": warmup,
        "statuses": statuses,
        "decisions_acting": acting,
        "customers": customers,
        "partitions": settings.partitions,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_second": round(events / wall, 1),
        "cpu_microseconds_per_event": round(cpu / events * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("mixed", "decide"), default="mixed")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10_000, help="decide: events not counted")
    args = parser.parse_args()
    if args.workload == "decide":
        result = run_decide(args.events, args.customers, args.seed, args.warmup)
        name = "core_decide"
    else:
        result = run(args.events, args.customers, args.seed)
        name = "core_throughput"
    result["machine"] = machine()
    write_result(name, result)


if __name__ == "__main__":
    main()
