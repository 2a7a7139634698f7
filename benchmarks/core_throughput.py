"""Throughput of the functional core alone: parse, profile update, decide, learn.

No Kafka and no Faust: this is the ceiling the worker's per-event overhead is measured
against. Simulated customers send events and answer every decision with an outcome.

    .venv/bin/python -m benchmarks.core_throughput --events 50000

Writes ``benchmarks/results/core_throughput-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import time

import orjson

from benchmarks.results_io import machine, write_result
from engine.decide import DecideConfig
from engine.journeys import default_catalogue
from engine.pipeline import Core
from engine.profile import Profile
from engine.records import Record
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args.events, args.customers, args.seed)
    result["machine"] = machine()
    write_result("core_throughput", result)


if __name__ == "__main__":
    main()
