"""The worker times every garbage collection by generation (``segue_gc_pause_seconds``):
the event loop stands still meanwhile, so a latency tail can be matched to them."""

from __future__ import annotations

import gc

from engine import observe
from engine.metrics import Metrics


def test_garbage_collections_are_timed_by_generation() -> None:
    metrics = Metrics()
    timer = observe._GcTimer(metrics)
    gc.callbacks.append(timer)
    try:
        gc.collect(2)
    finally:
        gc.callbacks.remove(timer)
    full = metrics.registry.get_sample_value("segue_gc_pause_seconds_count", {"generation": "2"})
    young = metrics.registry.get_sample_value("segue_gc_pause_seconds_count", {"generation": "0"})
    assert full == 1 and young == 0
    took = metrics.registry.get_sample_value("segue_gc_pause_seconds_sum", {"generation": "2"})
    assert took is not None and took > 0
