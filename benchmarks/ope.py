"""Do the off-policy estimates agree with the truth? The simulator knows it exactly.

1. Simulated customers (``models.simulator.Population``) send events; each decision
   point goes through the engine's own decide step (``engine.decide.decide``) with a
   fixed model (River logistic heads trained beforehand on uniformly random actions)
   and epsilon-greedy exploration, so the propensities are those the engine logs.
2. Each decision becomes a logged record through the same join ``segue evaluate`` uses
   (``engine.replay.Attribution``); its reward is drawn from the customer's true
   conversion probability for the arm taken.
3. Target policies (greedy, uniform random, a differently trained model ranked by score
   x value) are estimated off-policy (IPS, SNIPS, DR with the logged scores), and their
   true value on the very same contexts is the mean over decisions of
   ``sum_a target(a | x) * true_propensity(x, a)``.

    .venv/bin/python -m benchmarks.ope                    # 20 logs of 10,000 decisions
    .venv/bin/python -m benchmarks.ope --decisions 50000 --logs 5

Writes ``benchmarks/results/ope-<UTC time>.json``: per target and estimator, how often
the interval covered the truth, the mean error and the mean interval width.
"""

from __future__ import annotations

import argparse
import pickle
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.results_io import machine, write_result
from engine.actions import TRIGGERS
from engine.decide import DecideConfig, decide
from engine.journey_loader import default_catalogue
from engine.profile import Profile
from engine.profile_updates import apply_event
from engine.replay import Attribution
from models.evaluate import NONE, Logged, TargetPolicy, evaluate
from models.policy import LogisticHeads
from models.simulator import Population
from models.targets import greedy, ranked_by, uniform
from topics.events import Event, parse_event

START_MS = 1_800_000_000_000
STEP_MS = 50
CATALOGUE = default_catalogue()
VALUES = {a.action_id: a.value for a in CATALOGUE.actions}


@dataclass(frozen=True, slots=True)
class SimLog:
    """Logged decisions and, for each, the true conversion probability of every arm."""

    logs: list[Logged]
    truths: list[Mapping[str, float]]

    def true_value(self, target: TargetPolicy) -> float:
        """The target's expected reward per decision on these contexts, exactly."""
        total = 0.0
        for d, truth in zip(self.logs, self.truths, strict=True):
            total += sum(p * (0.0 if a == NONE else truth[a]) for a, p in target(d).items())
        return total / len(self.logs)


def decision_points(pop: Population) -> Iterator[tuple[Profile, Event]]:
    """Every known customer's decision point, with the profile it is decided on."""
    profiles: dict[str, Profile] = {}
    now_ms, offset = START_MS, 0
    while True:
        now_ms += STEP_MS
        for doc in pop.activity(now_ms):
            source = doc.pop("source")
            if "customer_id" not in doc:
                continue  # anonymous browsing: no decision, no profile of theirs here
            cid = str(doc["customer_id"])
            ev = parse_event(source, orjson.dumps(doc), cid.encode(), now_ms=now_ms)
            assert isinstance(ev, Event), ev
            offset += 1
            p = apply_event(
                profiles.get(cid) or Profile(cid), ev, topic=source, partition=0, offset=offset
            )
            profiles[cid] = p
            if f"{ev.source}.{ev.type}" in TRIGGERS:
                yield p, ev


def fixed_model(customers: int, steps: int, seed: int) -> LogisticHeads:
    """A model taught on ``steps`` uniformly random actions, then frozen (by pickling:
    what a model snapshot is)."""
    pop = Population(customers, seed=seed, id_prefix=f"train{seed}")
    rng = random.Random(seed)
    model = LogisticHeads()
    cfg = DecideConfig(exploration_rate=1.0)
    for i, (p, ev) in enumerate(decision_points(pop)):
        if i >= steps:
            break
        d = decide(p, ev, model, cfg, CATALOGUE, now_ms=ev.time_ms)
        if d.acts:
            assert d.channel is not None
            hit = rng.random() < pop.true_propensity(p.customer_id, d.action, d.channel)
            model.learn_one(d.features, f"{d.action}:{d.channel}", 1.0 if hit else 0.0)
    frozen: LogisticHeads = pickle.loads(pickle.dumps(model))
    return frozen


def simulate(
    model: LogisticHeads, *, customers: int, decisions: int, exploration: float, seed: int
) -> SimLog:
    """``decisions`` logged by ``model`` with epsilon-greedy exploration (no learning)."""
    # Ids of their own per seed: the exploration draw is seeded by the decision id, which
    # comes from the customer and event ids, so two seeds with one id scheme would share
    # their draws, and their errors would not be independent.
    pop = Population(customers, seed=seed, id_prefix=f"sim{seed}")
    rng = random.Random(seed * 7919 + 1)
    att = Attribution(window_ms=1, now_ms=2**62)
    truths: dict[str, dict[str, float]] = {}
    cfg = DecideConfig(exploration_rate=exploration)
    for i, (p, ev) in enumerate(decision_points(pop)):
        if i >= decisions:
            break
        d = decide(p, ev, model, cfg, CATALOGUE, now_ms=ev.time_ms)
        truths[d.decision_id] = {
            f"{c.action}:{c.channel}": pop.true_propensity(p.customer_id, c.action, c.channel)
            for c in d.candidates
            if c.eligible
        }
        att.add_decision(d)
        if d.acts and rng.random() < truths[d.decision_id][f"{d.action}:{d.channel}"]:
            data = {"decision_id": d.decision_id}
            att.add_outcome(
                Event("outcome", "converted", f"o{i}", p.customer_id, d.decided_at_ms, data)
            )
    logged = att.by_id()
    return SimLog(list(logged.values()), [truths[did] for did in logged])


def targets(other: LogisticHeads) -> dict[str, TargetPolicy]:
    return {
        "greedy": greedy(),
        "random": uniform,
        "other_model": ranked_by(other, VALUES),
    }


def agreement(sim: SimLog, policies: Mapping[str, TargetPolicy], level: float) -> dict[str, Any]:
    """Per target: the truth and each estimate with whether its interval covers it."""
    out: dict[str, Any] = {}
    for name, target in policies.items():
        truth = sim.true_value(target)
        report = evaluate(sim.logs, target, level=level)
        out[name] = {
            "truth": truth,
            "effective_n": report.effective_n,
            "max_weight": report.max_weight,
            **{
                e.name: {"value": e.value, "lo": e.lo, "hi": e.hi, "covers": e.covers(truth)}
                for e in report.estimates
            },
        }
    return out


def run(
    decisions: int, logs: int, customers: int, exploration: float, level: float
) -> dict[str, Any]:
    t0 = time.perf_counter()
    logging_model = fixed_model(customers, 6_000, seed=101)
    other = fixed_model(customers, 1_500, seed=202)
    policies = targets(other)
    runs = []
    for seed in range(1, logs + 1):
        sim = simulate(
            logging_model,
            customers=customers,
            decisions=decisions,
            exploration=exploration,
            seed=seed,
        )
        runs.append(
            {
                "seed": seed,
                "observed": sum(d.reward for d in sim.logs) / len(sim.logs),
                **agreement(sim, policies, level),
            }
        )
    summary: dict[str, Any] = {}
    for name in policies:
        summary[name] = {"truth_mean": _mean([r[name]["truth"] for r in runs])}
        for est in ("ips", "snips", "dr"):
            cells = [r[name][est] for r in runs]
            summary[name][est] = {
                "coverage": _mean([1.0 if c["covers"] else 0.0 for c in cells]),
                "mean_error": _mean(
                    [c["value"] - r[name]["truth"] for c, r in zip(cells, runs, strict=True)]
                ),
                "mean_width": _mean([c["hi"] - c["lo"] for c in cells]),
            }
    return {
        "benchmark": "ope",
        "decisions_per_log": decisions,
        "logs": logs,
        "customers": customers,
        "exploration_rate": exploration,
        "level": level,
        "summary": summary,
        "runs": runs,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--logs", type=int, default=20, help="independent logs (seeds 1..N)")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--exploration", type=float, default=0.1)
    parser.add_argument("--level", type=float, default=0.95)
    args = parser.parse_args()
    result = run(args.decisions, args.logs, args.customers, args.exploration, args.level)
    result["machine"] = machine()
    write_result("ope", result)


if __name__ == "__main__":
    main()
