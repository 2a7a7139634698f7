"""Conformance of the next-best-action policies (one suite, parametrised over all)."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable

import pytest

from models.policy import LogisticHeads, Policy
from models.uplift import UpliftHeads

POLICIES: list[Callable[[], Policy]] = [
    lambda: LogisticHeads(learning_rate=0.1),
    lambda: UpliftHeads(),
]
ARMS = ["a:email", "b:sms"]


def teach(policy: Policy, seed: int, n: int = 400) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        x = {"bias": 1.0, "f": rng.random()}
        policy.learn_one(x, "a:email", 1.0 if x["f"] > 0.5 else 0.0)
        policy.learn_one(x, "b:sms", 0.0)


@pytest.mark.parametrize("make", POLICIES)
def test_pickle_round_trip_before_and_after_learning(make: Callable[[], Policy]) -> None:
    x = {"bias": 1.0, "f": 0.9}
    policy = make()
    assert pickle.loads(pickle.dumps(policy)).score_many(x, ARMS) == policy.score_many(x, ARMS)
    teach(policy, 1)
    clone = pickle.loads(pickle.dumps(policy))
    assert clone.score_many(x, ARMS) == policy.score_many(x, ARMS)
    assert clone.version == policy.version


@pytest.mark.parametrize("make", POLICIES)
def test_deterministic_under_a_seed(make: Callable[[], Policy]) -> None:
    a, b = make(), make()
    teach(a, 3)
    teach(b, 3)
    x = {"bias": 1.0, "f": 0.2}
    assert a.score_many(x, ARMS) == b.score_many(x, ARMS)


@pytest.mark.parametrize("make", POLICIES)
def test_learns_which_arm_converts(make: Callable[[], Policy]) -> None:
    policy = make()
    teach(policy, 5)
    hi = policy.score_many({"bias": 1.0, "f": 0.95}, ARMS)
    lo = policy.score_many({"bias": 1.0, "f": 0.05}, ARMS)
    assert hi["a:email"] > 0.7 > lo["a:email"]
    assert hi["b:sms"] < 0.3


@pytest.mark.parametrize("make", POLICIES)
def test_unseen_arms_and_features_score_without_error(make: Callable[[], Policy]) -> None:
    policy = make()
    teach(policy, 7, n=20)
    scores = policy.score_many({"bias": 1.0, "never.seen": 3.0}, ["a:email", "new:push"])
    assert set(scores) == {"a:email", "new:push"}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
