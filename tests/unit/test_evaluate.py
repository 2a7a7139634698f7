"""Off-policy estimators on synthetic logs whose true values are known exactly.

A context is a number x in [0, 1] and two to four arms; arm k converts with probability
``mu(x, k)``. The logging policy is epsilon-greedy on noisy scores, with exact
propensities. A target's true value on the logged contexts is the mean of
``sum_k target(k | x) mu(x, k)``, which IPS and DR estimate without bias.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from statistics import mean, pvariance

import pytest

from models.evaluate import (
    NONE,
    Logged,
    dr,
    evaluate,
    ips,
    logged_scores,
    snips,
    weights,
)
from models.targets import greedy, uniform

EPS = 0.3
ARMS = ("a0:email", "a1:sms", "a2:push", "a3:inapp")


def mu(x: float, arm: str) -> float:
    k = ARMS.index(arm)
    return 0.05 + 0.15 * k * x if k % 2 else 0.5 - 0.4 * x + 0.05 * k


def synthetic(n: int, seed: int) -> list[Logged]:
    rng = random.Random(seed)
    logs = []
    for _ in range(n):
        x = rng.random()
        if rng.random() < 0.05:  # nothing eligible: quiet, for every policy
            logs.append(Logged((), NONE, 1.0, 0.0, features={"x": x}))
            continue
        arms = tuple(sorted(rng.sample(ARMS, rng.randint(2, 4))))
        scores = {a: min(1.0, max(0.0, mu(x, a) + rng.gauss(0, 0.1))) for a in arms}
        dist = epsilon_greedy(arms, scores)
        action = rng.choices(list(dist), weights=list(dist.values()))[0]
        reward = 1.0 if rng.random() < mu(x, action) else 0.0
        logs.append(Logged(arms, action, dist[action], reward, scores, scores, {"x": x}))
    return logs


def epsilon_greedy(arms: tuple[str, ...], scores: Mapping[str, float]) -> dict[str, float]:
    best = max(arms, key=lambda a: (scores[a], a))
    return {a: EPS / len(arms) + (1 - EPS if a == best else 0.0) for a in arms}


def logging_policy(d: Logged) -> Mapping[str, float]:
    return epsilon_greedy(d.arms, d.scores) if d.arms else {NONE: 1.0}


def oracle(d: Logged) -> Mapping[str, float]:
    if not d.arms:
        return {NONE: 1.0}
    return {max(d.arms, key=lambda a: mu(d.features["x"], a)): 1.0}


def true_reward(d: Logged, arm: str) -> float:
    return 0.0 if arm == NONE else mu(d.features["x"], arm)


def truth(logs: list[Logged], target: object) -> float:
    assert callable(target)
    return mean(sum(p * true_reward(d, a) for a, p in target(d).items()) for d in logs)


@pytest.mark.parametrize("target", [oracle, uniform, greedy()], ids=["oracle", "uniform", "greedy"])
def test_ips_and_dr_are_unbiased_and_their_intervals_cover_the_truth(target: object) -> None:
    assert callable(target)
    errors: dict[str, list[float]] = {"ips": [], "dr": [], "dr_true": []}
    covered: dict[str, int] = dict.fromkeys(errors, 0)
    seeds = range(120)
    for seed in seeds:
        logs = synthetic(300, seed)
        value = truth(logs, target)
        for name, e in (
            ("ips", ips(logs, target)),
            ("dr", dr(logs, target)),  # logged scores: noisy, yet DR stays unbiased
            ("dr_true", dr(logs, target, true_reward)),
        ):
            assert e.value is not None
            errors[name].append(e.value - value)
            covered[name] += e.covers(value)
    for name, errs in errors.items():
        # The mean error over 120 independent logs is within 4 standard errors of 0 ...
        assert abs(mean(errs)) < 4 * math.sqrt(pvariance(errs) / len(errs)), name
        # ... and a 95% interval covers the truth about 95% of the time: measured 0.93 to
        # 0.955 over 200 other seeds (the normal interval runs a little short when a few
        # large weights carry the estimate); 0.85 is five binomial deviations below 0.95.
        assert 0.85 <= covered[name] / len(seeds) <= 0.995, (name, covered[name])


def test_dr_with_a_good_reward_model_has_lower_variance_than_ips() -> None:
    ips_errors, dr_errors, ips_se, dr_se = [], [], [], []
    for seed in range(60):
        logs = synthetic(400, seed)
        value = truth(logs, oracle)
        a, b = ips(logs, oracle), dr(logs, oracle, true_reward)
        assert a.value is not None and b.value is not None
        assert a.stderr is not None and b.stderr is not None
        ips_errors.append(a.value - value)
        dr_errors.append(b.value - value)
        ips_se.append(a.stderr)
        dr_se.append(b.stderr)
    # Around the truth of each log, DR's estimates scatter less than IPS's (0.69 of the
    # variance here: the outcomes' own Bernoulli noise is what no reward model removes) ...
    assert pvariance(dr_errors) < 0.8 * pvariance(ips_errors)
    # ... and its intervals, which see the same from one log each, are narrower (0.83).
    assert mean(dr_se) < 0.9 * mean(ips_se)


def test_the_logging_policy_evaluated_on_its_own_log_is_its_observed_mean() -> None:
    logs = synthetic(500, 3)
    assert weights(logs, logging_policy) == pytest.approx([1.0] * len(logs))
    report = evaluate(logs, logging_policy)
    observed = mean(d.reward for d in logs)
    for e in (report.observed, report.ips, report.snips):
        assert e.value == pytest.approx(observed)
    assert report.effective_n == pytest.approx(len(logs))


def test_snips_is_a_weighted_mean_and_undefined_when_no_weight_is_positive() -> None:
    logs = [
        Logged(("a:sms", "b:sms"), "a:sms", 0.25, 1.0),
        Logged(("a:sms", "b:sms"), "a:sms", 0.5, 0.0),
        Logged(("a:sms", "b:sms"), "b:sms", 0.5, 1.0),
    ]
    always_a = lambda d: {"a:sms": 1.0}  # noqa: E731
    e = snips(logs, always_a)
    assert e.value == pytest.approx((4 * 1 + 2 * 0) / (4 + 2))
    assert ips(logs, always_a).value == pytest.approx((4 + 0 + 0) / 3)
    quiet = snips(logs, lambda d: {NONE: 1.0})
    assert quiet.value is None and quiet.n == 3


def test_intervals_need_two_decisions_and_none_are_undefined() -> None:
    one = [Logged(("a:sms",), "a:sms", 1.0, 1.0)]
    e = ips(one, uniform)
    assert (e.value, e.lo, e.hi, e.n) == (1.0, None, None, 1)
    empty = evaluate([], uniform)
    assert empty.ips.value is None and empty.dr.value is None and empty.effective_n == 0.0


def test_dr_uses_the_logged_scores_and_zero_for_staying_quiet() -> None:
    d = Logged(("a:sms", "b:sms"), "b:sms", 0.5, 1.0, scores={"a:sms": 0.3, "b:sms": 0.2})
    assert logged_scores(d, "a:sms") == 0.3 and logged_scores(d, NONE) == 0.0
    # Target takes b half the time: direct 0.5*0.3 + 0.5*0.2, correction (0.5/0.5)(1 - 0.2).
    e = dr([d], lambda _: {"a:sms": 0.5, "b:sms": 0.5})
    assert e.value == pytest.approx(0.25 + 0.8)


def test_a_target_must_return_a_distribution_over_the_decisions_arms() -> None:
    logs = [Logged(("a:sms",), "a:sms", 1.0, 1.0)]
    with pytest.raises(ValueError, match="not an arm"):
        ips(logs, lambda d: {"z:sms": 1.0})
    with pytest.raises(ValueError, match="no distribution"):
        ips(logs, lambda d: {"a:sms": 0.6})
    with pytest.raises(ValueError, match="no distribution"):
        ips(logs, lambda d: {"a:sms": 1.5, NONE: -0.5})


def test_a_logged_decision_needs_a_positive_propensity_for_an_arm_it_had() -> None:
    with pytest.raises(ValueError, match="propensity"):
        Logged(("a:sms",), "a:sms", 0.0, 1.0)
    with pytest.raises(ValueError, match="not among the arms"):
        Logged(("a:sms",), "b:sms", 0.5, 1.0)
    with pytest.raises(ValueError, match="confidence level"):
        evaluate([Logged(("a:sms",), "a:sms", 1.0, 1.0)] * 2, uniform, level=1.0)
