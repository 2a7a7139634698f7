"""Scenario: the engine's decide step logs decisions over simulated customers with
epsilon-greedy exploration and a fixed model; we estimate other policies from that log.

We expect each target's true value on the very same contexts, computed from the
simulator's true conversion probabilities, to lie within the IPS and DR intervals.
Seeded and deterministic; ``benchmarks/ope.py`` runs the same over many larger logs and
reports how often the intervals cover.
"""

from __future__ import annotations

import pytest

from benchmarks.ope import SimLog, agreement, fixed_model, simulate, targets


@pytest.fixture(scope="module")
def sim() -> tuple[SimLog, dict[str, object]]:
    logging_model = fixed_model(400, 1_500, seed=101)
    other = fixed_model(400, 600, seed=202)
    log = simulate(logging_model, customers=400, decisions=2_500, exploration=0.2, seed=5)
    return log, agreement(log, targets(other), level=0.95)


def test_the_log_is_what_the_engine_writes(sim: tuple[SimLog, dict[str, object]]) -> None:
    log, _ = sim
    assert len(log.logs) == 2_500
    explored = [d for d in log.logs if d.propensity < 0.5]
    # Exploration took arms other than the greedy one, with their exact small propensity.
    assert explored and all(
        0.2 / len(d.arms) == pytest.approx(d.propensity, abs=1e-6) for d in explored
    )
    assert 0 < sum(d.reward for d in log.logs) < len(log.logs)


@pytest.mark.parametrize("target", ["greedy", "random", "other_model"])
@pytest.mark.parametrize("estimator", ["ips", "dr"])
def test_the_true_value_lies_within_the_interval(
    sim: tuple[SimLog, dict[str, object]], target: str, estimator: str
) -> None:
    _, result = sim
    cell = result[target]
    assert isinstance(cell, dict)
    est = cell[estimator]
    assert est["covers"], (target, estimator, cell["truth"], est)
    assert est["hi"] - est["lo"] < 0.2  # an interval that says something


def test_the_targets_really_differ(sim: tuple[SimLog, dict[str, object]]) -> None:
    _, result = sim
    truths = {name: cell["truth"] for name, cell in result.items() if isinstance(cell, dict)}
    # Greedy on the logging model beats random; the policies are not one and the same.
    assert truths["greedy"] > truths["random"] + 0.02
    assert len({round(v, 4) for v in truths.values()}) == 3
