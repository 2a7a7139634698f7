"""Suppressions are counted per candidate and reason, whether a decision's candidates
are a tuple shared by many decisions (counted once, then remembered) or its own
(engine/result_metrics.py)."""

from __future__ import annotations

import time

from engine.metrics import Metrics
from engine.records import Record
from engine.result import Result
from engine.result_metrics import observe_result
from topics.catalogue import TopicNames
from topics.decisions import NO_ACTION, Candidate, Decision, kept_encoded

NAMES = TopicNames("cx.")
RECORD = Record("cx.web", 0, 0, b"c1", b"{}")


def decided(candidates: tuple[Candidate, ...]) -> Result:
    decision = Decision(
        "d-1", "c1", "e1", "web", "search", 0, NO_ACTION, None, None, None, False,
        ("r",), "m/0", candidates=candidates,
    )  # fmt: skip
    return Result("decided", decision=decision)


def suppressed(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("segue_suppressions_total", {"reason": reason})
    return value or 0.0


def test_suppressions_are_counted_per_reason_for_shared_and_own_candidates() -> None:
    metrics = Metrics()
    shared = kept_encoded(
        (
            Candidate("a", "sms", False, "no_consent"),
            Candidate("a", "email", False, "no_consent"),
            Candidate("b", "email", False, "quiet_hours"),
            Candidate("c", "email", False, "stage"),  # not the contact policy's
        )
    )
    for _ in range(3):  # the second and third from what the first counted
        observe_result(metrics, NAMES, RECORD, decided(shared), time.perf_counter())
    assert suppressed(metrics, "no_consent") == 6
    assert suppressed(metrics, "quiet_hours") == 3
    assert suppressed(metrics, "stage") == 0
    own = (Candidate("a", "sms", False, "holdout"), Candidate("b", "sms", True, None, 0.4))
    observe_result(metrics, NAMES, RECORD, decided(own), time.perf_counter())
    observe_result(metrics, NAMES, RECORD, decided(own), time.perf_counter())
    assert suppressed(metrics, "holdout") == 2
    assert suppressed(metrics, "no_consent") == 6
