"""Scenario: the worker counts its records with tallies (engine/tallies.py) instead of
prometheus_client's own metrics, to save their per-call lock.

We expect a scrape to show exactly what prometheus_client's metrics would show for the
same calls (names, labels, cumulative buckets, sums, counts), and mistakes a
prometheus_client metric refuses to be refused too.
"""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import LATENCY_BUCKETS, Metrics
from engine.tallies import CounterTally, HistogramTally, SummaryTally


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample of a scrape but the ``_created`` ones, which tallies do not export."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_scrape_shows_what_prometheus_clients_metrics_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    c1 = Counter("t_events", "Events.", ["source", "type"], registry=theirs)
    c2 = CounterTally("t_events", "Events.", ["source", "type"], registry=ours)
    u1 = Counter("t_plain", "Unlabelled.", registry=theirs)
    u2 = CounterTally("t_plain", "Unlabelled.", registry=ours)
    h1 = Histogram("t_latency", "Latency.", buckets=LATENCY_BUCKETS, registry=theirs)
    h2 = HistogramTally("t_latency", "Latency.", buckets=LATENCY_BUCKETS, registry=ours)
    g1 = Histogram("t_by", "By kind.", ["kind"], buckets=(0.5, 1.0), registry=theirs)
    g2 = HistogramTally("t_by", "By kind.", ["kind"], buckets=(0.5, 1.0), registry=ours)
    s1 = Summary("t_loss", "Loss.", registry=theirs)
    s2 = SummaryTally("t_loss", "Loss.", registry=ours)
    assert samples(theirs) == samples(ours)  # before anything: unlabelled ones at zero

    rng = random.Random(7)
    for _ in range(2_000):
        source, kind = rng.choice(["web", "support"]), rng.choice(["a", "b", "c"])
        c1.labels(source, kind).inc()
        c2.labels(source, kind).inc()
        amount = rng.choice([1, 2.5])
        u1.inc(amount)
        u2.inc(amount)
        # Values on the bounds too: a bucket holds what is less than or equal to it.
        seconds = rng.choice([0.001, 0.05, 10.0, 11.0, rng.random() / 10, rng.random() * 3])
        h1.observe(seconds)
        h2.observe(seconds)
        g1.labels(kind=kind).observe(seconds)
        g2.labels(kind=kind).observe(seconds)
        s1.observe(seconds)
        s2.observe(seconds)
    ours_now = samples(ours)
    assert ours_now == samples(theirs)
    # three kinds, each with the buckets 0.5, 1 and +Inf
    assert sum(1 for name, _, _ in ours_now if name == "t_by_bucket") == 3 * 3


def test_mistakes_are_refused_with_the_metric_named() -> None:
    r = CollectorRegistry()
    events = CounterTally("t_events", "Events.", ["source", "type"], registry=r)
    with pytest.raises(ValueError, match="t_events: labels are"):
        events.labels("web")
    with pytest.raises(ValueError, match="t_events: labels are"):
        events.labels(source="web", kind="x")
    with pytest.raises(ValueError, match="must be strings"):
        events.labels("web", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_events: labels are"):
        events.labels(source="web", type="a", extra="x")
    with pytest.raises(ValueError, match="call labels"):
        events.inc()
    with pytest.raises(ValueError, match="counters only go up"):
        events.labels("web", "a").inc(-1)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CounterTally("t_events", "Again.", registry=r)


def test_the_workers_metrics_scrape_and_parse() -> None:
    metrics = Metrics()
    metrics.events.labels("web", "page_view").inc()
    metrics.latency.observe(0.02)
    metrics.log_loss.observe(0.7)
    got = samples(metrics.registry)
    assert ("segue_events_consumed_total", (("source", "web"), ("type", "page_view")), 1.0) in got
    assert ("segue_event_to_decision_seconds_bucket", (("le", "0.025"),), 1.0) in got
    assert ("segue_event_to_decision_seconds_bucket", (("le", "0.01"),), 0.0) in got
    assert ("segue_event_to_decision_seconds_count", (), 1.0) in got
    assert ("segue_model_log_loss_count", (), 1.0) in got
    assert ("segue_model_log_loss_sum", (), 0.7) in got
