"""Candidate policies for off-policy evaluation: given a logged decision, a distribution
over its arms and ``none``.

Each sees what the logging policy saw: the eligible arms it drew from, their logged
scores and priorities, and the feature snapshot. None of them looks at the logged action
or reward, which would make the estimate meaningless.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from models.evaluate import NONE, Logged, TargetPolicy


class Scorer(Protocol):
    """The part of ``models.policy.Policy`` a target policy needs."""

    def score_many(self, x: dict[str, float], arms: list[str]) -> dict[str, float]: ...


def greedy(min_score: float = 0.0) -> TargetPolicy:
    """The logging policy without exploration: the highest logged priority (ties to the
    larger arm name, as ``engine.decide`` breaks them), or ``none`` when its score is
    below ``min_score``.

    >>> d = Logged(("a:email", "b:sms"), "a:email", 0.95, 0.0,
    ...            scores={"a:email": 0.2, "b:sms": 0.4}, priorities={"a:email": 0.2, "b:sms": 0.4})
    >>> greedy()(d), greedy(min_score=0.5)(d)
    ({'b:sms': 1.0}, {'none': 1.0})
    """

    def choose(d: Logged) -> Mapping[str, float]:
        return _best(d.arms, d.priorities, d.scores, min_score)

    return choose


def uniform(d: Logged) -> Mapping[str, float]:
    """A uniform draw among the eligible arms; ``none`` only when there is none.

    >>> uniform(Logged(("a:email", "b:sms"), "none", 1.0, 0.0))
    {'a:email': 0.5, 'b:sms': 0.5}
    """
    if not d.arms:
        return {NONE: 1.0}
    return dict.fromkeys(d.arms, 1.0 / len(d.arms))


def ranked_by(model: Scorer, values: Mapping[str, float], min_score: float = 0.0) -> TargetPolicy:
    """Greedy by another model's score x the action's business value (``values`` by action
    id; 1.0 when absent), scored on the logged feature snapshot.

    >>> class Fixed:
    ...     def score_many(self, x, arms):
    ...         return {a: 0.3 if a.startswith("b") else 0.2 for a in arms}
    >>> d = Logged(("a:email", "b:sms"), "a:email", 0.95, 0.0)
    >>> ranked_by(Fixed(), {})(d), ranked_by(Fixed(), {"a": 2.0})(d)
    ({'b:sms': 1.0}, {'a:email': 1.0})
    """

    def choose(d: Logged) -> Mapping[str, float]:
        if not d.arms:
            return {NONE: 1.0}
        scores = model.score_many(dict(d.features), list(d.arms))
        priority = {a: scores[a] * values.get(a.split(":", 1)[0], 1.0) for a in d.arms}
        return _best(d.arms, priority, scores, min_score)

    return choose


def load_snapshot(path: Path) -> Scorer:
    """A pickled policy (anything with ``score_many``). Unpickling runs code the file
    names: load only snapshots your own workers or tools wrote.

    Raises ValueError with a one-line reason when the file cannot serve as a policy.
    """
    try:
        with path.open("rb") as fh:
            obj = pickle.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # unpickling can raise nearly anything on a foreign file
        raise ValueError(f"{path} is not a pickled model snapshot: {exc!r}") from None
    if not callable(getattr(obj, "score_many", None)):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a policy with score_many")
    model: Scorer = obj
    return model


def _best(
    arms: tuple[str, ...],
    priority: Mapping[str, float],
    scores: Mapping[str, float],
    min_score: float,
) -> dict[str, float]:
    if not arms:
        return {NONE: 1.0}
    best = max(arms, key=lambda a: (priority.get(a, 0.0), a))
    return {best if scores.get(best, 0.0) >= min_score else NONE: 1.0}
