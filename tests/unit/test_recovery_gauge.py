"""Scenario: Faust reports rebalances to the worker's sensor through its hooks.

We expect ``segue_recovery_seconds`` to hold the time from the new assignment being taken
to the end of the rebalance (tables recovered, streams resumed), a rebalance that starts
over before it ends to count only its last attempt, and an end without an assignment to
leave the last value alone.
"""

from __future__ import annotations

from engine.metrics import Metrics
from engine.observe import _Sensor


class Clock:
    """Returns the given times, one per call."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def recovery(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("segue_recovery_seconds")


def test_recovery_runs_from_the_assignment_to_the_end_of_the_rebalance() -> None:
    metrics = Metrics()
    sensor = _Sensor(metrics, clock=Clock(10.0, 13.5))
    state = sensor.on_rebalance_start(None)
    sensor.on_rebalance_return(None, state)
    sensor.on_rebalance_end(None, state)
    assert recovery(metrics) == 3.5
    assert metrics.registry.get_sample_value("segue_rebalances_total") == 1


def test_a_rebalance_that_starts_over_counts_its_last_attempt() -> None:
    metrics = Metrics()
    sensor = _Sensor(metrics, clock=Clock(1.0, 5.0, 7.0))
    first = sensor.on_rebalance_start(None)
    sensor.on_rebalance_return(None, first)
    # Faust hands the end only the state of the rebalance that started last.
    second = sensor.on_rebalance_start(None)
    sensor.on_rebalance_return(None, second)
    sensor.on_rebalance_end(None, second)
    assert recovery(metrics) == 2.0


def test_an_end_without_an_assignment_keeps_the_last_value() -> None:
    metrics = Metrics()
    sensor = _Sensor(metrics, clock=Clock(0.0, 4.0))
    state = sensor.on_rebalance_start(None)
    sensor.on_rebalance_return(None, state)
    sensor.on_rebalance_end(None, state)
    sensor.on_rebalance_end(None, sensor.on_rebalance_start(None))
    assert recovery(metrics) == 4.0
