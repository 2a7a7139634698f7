"""Off-policy evaluation: what another policy would have earned on the decisions we logged.

Each logged decision is a context (the eligible arms, their logged scores and priorities,
the feature snapshot), the arm the logging policy took with the exact probability it
took it (``propensity``), and the reward that followed (1 for a click or conversion in
the attribution window, else 0). A target policy maps a context to a distribution over
its arms and ``none``. Three estimators of the target's expected reward per decision:

- **IPS** (inverse propensity scoring): the mean of ``w * r`` with
  ``w = target(a | x) / propensity``. Unbiased when the logged propensities are exact
  and every arm the target may take had a non-zero logging probability (overlap).
- **SNIPS** (self-normalised IPS): ``sum(w r) / sum(w)``. Slightly biased, usually far
  less variable when a few weights are large.
- **DR** (doubly robust): a reward model's prediction under the target plus the IPS
  correction of its error on the logged arm. Unbiased when either the propensities or
  the reward model are right; the better the reward model, the smaller its variance.

Each estimate carries a confidence interval from the normal approximation with the
sample variance of its per-decision terms (for SNIPS, the delta method): it describes
the noise of the exploration draws and the outcomes, not the bias a violated
assumption brings. With few decisions or rare large weights, it is too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

NONE = "none"
"""The arm that stays quiet. It never earns a reward: no outcome can name a decision
that sent nothing."""


@dataclass(frozen=True, slots=True)
class Logged:
    """One logged decision, as off-policy evaluation sees it."""

    arms: tuple[str, ...]
    """The ``action:channel`` arms the logging policy drew from; ``none`` is always also
    a choice."""
    action: str
    """The arm taken, or ``none``."""
    propensity: float
    """The probability with which the logging policy took ``action``."""
    reward: float
    scores: Mapping[str, float] = field(default_factory=dict)
    """The logged model score (propensity of a conversion) of each arm."""
    priorities: Mapping[str, float] = field(default_factory=dict)
    """What the logging policy ranked by (score x value x weight) of each arm."""
    features: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.propensity <= 1.0:
            raise ValueError(f"propensity must be in (0, 1], not {self.propensity}")
        if self.action != NONE and self.action not in self.arms:
            raise ValueError(f"logged action {self.action!r} is not among the arms")


TargetPolicy = Callable[[Logged], Mapping[str, float]]
"""A candidate policy: a distribution over ``logged.arms`` and ``none`` (absent = 0)."""

RewardModel = Callable[[Logged, str], float]
"""Predicted expected reward of an arm in a logged context."""


def logged_scores(d: Logged, arm: str) -> float:
    """The reward model DR uses by default: the logging model's own score of the arm,
    0 for staying quiet (which never earns a reward)."""
    return 0.0 if arm == NONE else float(d.scores.get(arm, 0.0))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A value with its normal-approximation confidence interval; ``value`` is None when
    the estimator is undefined (no decisions, or SNIPS with every weight 0)."""

    name: str
    value: float | None
    stderr: float | None
    lo: float | None
    hi: float | None
    n: int

    def covers(self, truth: float) -> bool:
        return self.lo is not None and self.hi is not None and self.lo <= truth <= self.hi


@dataclass(frozen=True, slots=True)
class Report:
    """Every estimate of one target policy over one log."""

    level: float
    observed: Estimate
    """The logging policy's own mean reward: the baseline every estimate compares to."""
    ips: Estimate
    snips: Estimate
    dr: Estimate
    effective_n: float
    """Kish's effective sample size of the weights, ``(sum w)^2 / sum w^2``: far below
    ``n`` means a few decisions carry the estimate (weak overlap)."""
    max_weight: float

    @property
    def estimates(self) -> tuple[Estimate, ...]:
        return (self.ips, self.snips, self.dr)


def check_distribution(d: Logged, dist: Mapping[str, float]) -> None:
    """Raise ValueError unless ``dist`` is a distribution over ``d``'s arms and ``none``."""
    allowed = {*d.arms, NONE}
    if stray := [a for a in dist if a not in allowed]:
        raise ValueError(f"target policy chose {stray[0]!r}, not an arm of this decision")
    if any(p < 0.0 for p in dist.values()) or abs(sum(dist.values()) - 1.0) > 1e-6:
        raise ValueError(f"target policy returned no distribution: {dict(dist)}")


def weights(logs: Sequence[Logged], target: TargetPolicy) -> list[float]:
    """``target(a_i | x_i) / propensity_i`` for each logged decision."""
    return [_weigh(d, target)[0] for d in logs]


def ips(logs: Sequence[Logged], target: TargetPolicy, *, level: float = 0.95) -> Estimate:
    """Inverse propensity scoring.

    >>> logs = [Logged(("a", "b"), "a", 0.5, 1.0), Logged(("a", "b"), "b", 0.5, 0.0)]
    >>> e = ips(logs, lambda d: {"a": 1.0})
    >>> e.value, e.n
    (1.0, 2)
    """
    terms = [w * d.reward for d, w in zip(logs, weights(logs, target), strict=True)]
    return _mean_estimate("ips", terms, level)


def snips(logs: Sequence[Logged], target: TargetPolicy, *, level: float = 0.95) -> Estimate:
    """Self-normalised IPS, with a delta-method interval.

    >>> logs = [Logged(("a", "b"), "a", 0.5, 1.0), Logged(("a", "b"), "a", 0.5, 0.0)]
    >>> snips(logs, lambda d: {"a": 1.0}).value
    0.5
    """
    return _snips(logs, weights(logs, target), level)


def dr(
    logs: Sequence[Logged],
    target: TargetPolicy,
    model: RewardModel = logged_scores,
    *,
    level: float = 0.95,
) -> Estimate:
    """Doubly robust: the reward model's value of the target, corrected by IPS on the
    model's error for the logged arm.

    >>> logs = [Logged(("a", "b"), "b", 0.5, 0.0, scores={"a": 0.3, "b": 0.1})]
    >>> round(dr(logs, lambda d: {"a": 1.0}).value, 6)
    0.3
    """
    weighed = _weighed(logs, target)
    terms = [_dr_term(d, dist, w, model) for d, (w, dist) in zip(logs, weighed, strict=True)]
    return _mean_estimate("dr", terms, level)


def evaluate(
    logs: Sequence[Logged],
    target: TargetPolicy,
    reward_model: RewardModel = logged_scores,
    *,
    level: float = 0.95,
) -> Report:
    """IPS, SNIPS and DR of ``target`` in one pass (the target is asked once per decision).

    >>> logs = [Logged(("a",), "a", 0.9, 1.0), Logged(("a",), "none", 0.1, 0.0)]
    >>> r = evaluate(logs, lambda d: {"a": 1.0})
    >>> round(r.ips.value, 4), r.snips.value, r.observed.value
    (0.5556, 1.0, 0.5)
    """
    weighed = list(_weighed(logs, target))
    ws = [w for w, _ in weighed]
    total, squares = sum(ws), sum(w * w for w in ws)
    return Report(
        level=level,
        observed=_mean_estimate("observed", [d.reward for d in logs], level),
        ips=_mean_estimate("ips", [w * d.reward for d, w in zip(logs, ws, strict=True)], level),
        snips=_snips(logs, ws, level),
        dr=_mean_estimate(
            "dr",
            [
                _dr_term(d, dist, w, reward_model)
                for d, (w, dist) in zip(logs, weighed, strict=True)
            ],
            level,
        ),
        effective_n=total * total / squares if squares else 0.0,
        max_weight=max(ws, default=0.0),
    )


def _weighed(
    logs: Sequence[Logged], target: TargetPolicy
) -> list[tuple[float, Mapping[str, float]]]:
    return [_weigh(d, target) for d in logs]


def _weigh(d: Logged, target: TargetPolicy) -> tuple[float, Mapping[str, float]]:
    dist = target(d)
    check_distribution(d, dist)
    return dist.get(d.action, 0.0) / d.propensity, dist


def _dr_term(d: Logged, dist: Mapping[str, float], w: float, model: RewardModel) -> float:
    direct = sum(p * model(d, arm) for arm, p in dist.items() if p)
    return direct + w * (d.reward - model(d, d.action))


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, not {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _mean_estimate(name: str, terms: Sequence[float], level: float) -> Estimate:
    """Mean of ``terms`` with a normal interval from their sample variance (n - 1)."""
    n = len(terms)
    if n == 0:
        return Estimate(name, None, None, None, None, 0)
    mean = math.fsum(terms) / n
    if n < 2:
        return Estimate(name, mean, None, None, None, n)
    var = math.fsum((t - mean) ** 2 for t in terms) / (n - 1)
    se = math.sqrt(var / n)
    half = _z(level) * se
    return Estimate(name, mean, se, mean - half, mean + half, n)


def _snips(logs: Sequence[Logged], ws: Sequence[float], level: float) -> Estimate:
    n, total = len(logs), math.fsum(ws)
    if n == 0 or total <= 0.0:
        return Estimate("snips", None, None, None, None, n)
    value = math.fsum(w * d.reward for d, w in zip(logs, ws, strict=True)) / total
    if n < 2:
        return Estimate("snips", value, None, None, None, n)
    # Delta method for a ratio of means, with the n / (n - 1) of a sample variance.
    spread = math.fsum((w * (d.reward - value)) ** 2 for d, w in zip(logs, ws, strict=True))
    se = math.sqrt(spread * n / (n - 1)) / total
    half = _z(level) * se
    return Estimate("snips", value, se, value - half, value + half, n)
