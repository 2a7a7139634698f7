"""The explorer's draws: seeded by the decision id alone."""

from __future__ import annotations

import random

from models.explore import Choice, EpsilonGreedy

POOL = ["a:email", "b:sms", "c:push"]


def _fresh(rate: float, greedy: str | None, seed: str) -> Choice:
    """``EpsilonGreedy.choose`` with a generator of its own per draw, as it once drew."""
    rng = random.Random(seed)
    explored = rng.random() < rate
    arm = rng.choice(sorted(POOL)) if explored else greedy
    p = rate / len(POOL) if arm is not None else 0.0
    p += (1.0 - rate) if arm == greedy else 0.0
    return Choice(arm, explored, p)


def test_a_kept_generator_draws_as_a_fresh_one_per_decision_would() -> None:
    """Scenario: every draw reseeds one kept generator. We expect, whatever was drawn
    before, the choice a new generator seeded with the same id makes."""
    explorer = EpsilonGreedy(0.5)
    seeds = [f"d-{i:032x}" for i in range(300)]
    first = [explorer.choose(POOL, "b:sms", seed=s) for s in seeds]
    again = [explorer.choose(POOL, "b:sms", seed=s) for s in reversed(seeds)][::-1]
    assert first == again == [_fresh(0.5, "b:sms", s) for s in seeds]
    assert 100 < sum(c.explored for c in first) < 200
    assert {c.arm for c in first if c.explored} == set(POOL)
