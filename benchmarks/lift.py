"""How much conversion the learned policy wins, through the real core, against the
oracle's and a random policy's on the very same decisions.

    .venv/bin/python -m benchmarks.lift --decisions 100000

1. A simulated population (``models.simulator``: hidden segments and devices, known true
   response probabilities) acts on a simulated clock: each customer about
   ``--activity-per-day`` times a day, 30% browsing anonymously until they log in.
2. Every record goes through ``engine.pipeline.Core`` as ``engine.app.build_core`` builds
   it from the default settings (the worker's policy, explorer, journeys, attribution
   window): dict tables, forwarded records fed back, journey timers nudged when due.
3. Every decision that acts is answered by the simulator at its own pace (clicks in
   minutes, purchases within the hour, dismissals in hours, silence until the window
   expires), so the model learns only what the engine can attribute.
4. For each next-best-action marketing decision, the simulator gives the true
   conversion probability of the arm chosen, the mean over the eligible arms (a random
   policy) and the best (the oracle). The lift fraction is
   (learned - random) / (oracle - random), summed over decisions: per slice of
   ``--slice`` decisions (the learning curve) and over the last ``--tail`` decisions.

Several seeds (``--seeds 1,2,3``) run one after another. Writes
``benchmarks/results/lift-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from benchmarks.core_throughput import DictState
from benchmarks.results_io import machine, write_result
from engine.app import build_core
from engine.pipeline import Core
from engine.records import Record, expected_partition
from engine.result import Result
from engine.settings import Settings
from models.simulator import Population
from topics.catalogue import TopicNames
from topics.decisions import Decision

T0 = 1_800_000_000_000
DAY_MS = 86_400_000


@dataclass(slots=True)
class Run:
    """What one seed's run saw, decision by decision and in total."""

    chosen: list[float] = field(default_factory=list)
    rand: list[float] = field(default_factory=list)
    oracle: list[float] = field(default_factory=list)
    explored: list[bool] = field(default_factory=list)
    records: int = 0
    lessons: dict[str, int] = field(default_factory=dict)
    revenue: float = 0.0
    late: int = 0
    converted: int = 0
    answered: int = 0
    core_cpu: float = 0.0


class Loop:
    """The core, its tables and the simulated world around it, on one clock."""

    def __init__(self, core: Core, pop: Population, settings: Settings) -> None:
        self.core, self.pop, self.settings = core, pop, settings
        self.names = TopicNames(settings.topic_prefix)
        self.state = DictState()
        self.offsets: dict[tuple[str, int], int] = {}
        self.timers: dict[str, int] = {}
        self.wakes: list[tuple[int, str]] = []
        self.run = Run()

    def feed(self, topic: str, key: bytes, value: bytes, now_ms: int) -> None:
        part = expected_partition(key, self.settings.partitions)
        offset = self.offsets[topic, part] = self.offsets.get((topic, part), -1) + 1
        rec = Record(topic, part, offset, key, value)
        core = self.core
        step = {
            core.identity_topic: core.link,
            core.stitched_topic: core.stitched,
            core.timer_topic: core.tick,
        }.get(topic, core.ingest)
        cpu = time.process_time()
        result = step(rec, self.state, now_ms=now_ms)
        self.run.core_cpu += time.process_time() - cpu
        self.run.records += 1
        self.store(result)
        for s in result.sends:
            if s.topic in (core.identity_topic, core.stitched_topic):
                assert s.key is not None and s.value is not None
                self.feed(s.topic, s.key, s.value, now_ms)
        if result.decision is not None:
            self.decided(result.decision, now_ms, scored=True)
        for d in result.journey_decisions:
            self.decided(d, now_ms, scored=False)

    def store(self, result: Result) -> None:
        for key, profile in result.writes.items():
            if profile is None:
                self.state.profiles.pop(key, None)
            else:
                self.state.profiles[key] = profile
        self.state.identities.update(result.links)
        for key, wake in result.timers.items():
            if wake is None:
                self.timers.pop(key, None)
            else:
                self.timers[key] = wake
                heapq.heappush(self.wakes, (wake, key))
        run = self.run
        for lesson in result.lessons:
            if lesson.log_loss is not None:
                run.lessons[lesson.kind] = run.lessons.get(lesson.kind, 0) + 1
        run.late += result.late_outcomes
        run.revenue += result.revenue

    def decided(self, d: Decision, now_ms: int, *, scored: bool) -> None:
        if not d.acts:
            return
        doc = {"decision_id": d.decision_id, "customer_id": d.customer_id, "action": d.action}
        converts = self.pop.answer({**doc, "channel": d.channel}, now_ms)
        self.run.answered += 1
        if not scored or d.action_class != "marketing":
            return
        candidates = [
            {"action": c.action, "channel": c.channel, "eligible": c.eligible} for c in d.candidates
        ]
        expected = self.pop.expected(
            {**doc, "channel": d.channel, "action_class": d.action_class, "candidates": candidates}
        )
        if expected is not None:
            run = self.run
            run.chosen.append(expected[0])
            run.rand.append(expected[1])
            run.oracle.append(expected[2])
            run.explored.append(d.explored)
            run.converted += converts

    def send_event(self, ev: dict[str, Any], now_ms: int) -> None:
        source = ev.pop("source")
        who = ev.get("customer_id") or ev["anonymous_id"]
        self.feed(self.names.source(source), who.encode(), orjson.dumps(ev), now_ms)

    def nudge(self, now_ms: int) -> None:
        while self.wakes and self.wakes[0][0] <= now_ms:
            wake, key = heapq.heappop(self.wakes)
            if self.timers.get(key) != wake:
                continue  # a later write moved it
            value = orjson.dumps({"customer_id": key, "now_ms": now_ms})
            self.feed(self.core.timer_topic, key.encode(), value, now_ms)


def simulate(
    decisions: int, customers: int, seed: int, activity_per_day: float, settings: Settings
) -> Run:
    core = build_core(settings)
    pop = Population(customers, seed=seed, anonymous_share=0.3)
    loop = Loop(core, pop, settings)
    step_ms = DAY_MS / (activity_per_day * customers)
    i = 0
    while len(loop.run.chosen) < decisions:
        i += 1
        now_ms = T0 + int(i * step_ms)
        for ev in pop.due(now_ms):
            loop.send_event(ev, ev["time"])
        for ev in pop.activity(now_ms):
            loop.send_event(ev, now_ms)
        loop.nudge(now_ms)
    return loop.run


def fraction(run: Run, lo: int, hi: int) -> float:
    learned = sum(run.chosen[lo:hi])
    rand = sum(run.rand[lo:hi])
    oracle = sum(run.oracle[lo:hi])
    return (learned - rand) / (oracle - rand) if oracle > rand else 0.0


def summary(run: Run, *, tail: int, slice_size: int, wall: float, cpu: float) -> dict[str, Any]:
    n = len(run.chosen)
    lo = max(0, n - tail)

    def mean(xs: list[float]) -> float:
        return round(sum(xs[lo:]) / max(1, n - lo), 5)

    return {
        "decisions": n,
        "lift_fraction_tail": round(fraction(run, lo, n), 4),
        "tail_decisions": n - lo,
        "expected_conversion_tail": {
            "learned": mean(run.chosen),
            "random": mean(run.rand),
            "oracle": mean(run.oracle),
        },
        "observed_conversion_all": round(run.converted / max(1, n), 5),
        "explored_share_tail": round(sum(run.explored[lo:]) / max(1, n - lo), 4),
        "learning_curve": [
            {
                "upto": min(n, s + slice_size),
                "lift_fraction": round(fraction(run, s, s + slice_size), 4),
            }
            for s in range(0, n, slice_size)
        ],
        "lessons_learned": dict(sorted(run.lessons.items())),
        "late_outcomes": run.late,
        "attributed_revenue": round(run.revenue, 2),
        "decisions_answered": run.answered,
        "records_through_core": run.records,
        "wall_seconds": round(wall, 2),
        "decisions_per_second": round(n / wall, 1),
        "cpu_microseconds_per_decision": round(cpu / n * 1e6, 1),
        "core_cpu_microseconds_per_decision": round(run.core_cpu / n * 1e6, 1),
        "core_cpu_microseconds_per_record": round(run.core_cpu / max(1, run.records) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--activity-per-day", type=float, default=2.0)
    parser.add_argument("--tail", type=int, default=20_000)
    parser.add_argument("--slice", type=int, default=10_000)
    args = parser.parse_args()
    settings = replace(Settings(), table_store="memory://")
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        run = simulate(args.decisions, args.customers, seed, args.activity_per_day, settings)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        result = summary(run, tail=args.tail, slice_size=args.slice, wall=wall, cpu=cpu)
        print(f"seed {seed}: lift fraction {result['lift_fraction_tail']}", flush=True)
        runs.append({"seed": seed, **result})
    fractions = [r["lift_fraction_tail"] for r in runs]
    write_result(
        "lift",
        {
            "benchmark": "lift",
            "decisions": args.decisions,
            "customers": args.customers,
            "activity_per_day": args.activity_per_day,
            "tail": args.tail,
            "lift_fraction_tail_mean": round(statistics.mean(fractions), 4),
            "lift_fraction_tail_min": min(fractions),
            "settings": {
                "exploration_rate": settings.exploration_rate,
                "learning_rate": settings.learning_rate,
                "attribution_window_seconds": settings.attribution_window_seconds,
            },
            "runs": runs,
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
