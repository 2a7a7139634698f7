"""Segue's service-level Prometheus metrics: one registry, base units, bounded labels.

The metrics the worker writes per record are tallies (engine/tallies.py): plain numbers
the registry collects when scraped, at a fraction of the cost of prometheus_client's own
metrics. The rest, written now and then or from other threads, are prometheus_client's.

No customer id or other unbounded value is ever a label.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib.metadata import version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from engine.attribution import Lesson
from engine.tallies import CounterTally, HistogramTally, SummaryTally

# Buckets span a healthy few milliseconds up to the multi-second tail a rebalance causes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = CounterTally(
            "segue_events_consumed",
            "Input records consumed, by source and event type (invalid when rejected).",
            ["source", "type"],
            registry=r,
        )
        self.dead_letters = CounterTally(
            "segue_dead_letters", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.decisions = CounterTally(
            "segue_decisions",
            "Decisions made, by action and channel.",
            ["action", "channel"],
            registry=r,
        )
        self.replayed = CounterTally(
            "segue_replayed_events",
            "Events skipped because their source offset was already applied.",
            registry=r,
        )
        self.duplicates = CounterTally(
            "segue_duplicates_dropped",
            "Events not applied because their (source, id) was applied within the window.",
            registry=r,
        )
        self.forwarded = CounterTally(
            "segue_events_forwarded",
            "Events re-keyed to the customer they belong to (identity stitching).",
            registry=r,
        )
        self.rewards = CounterTally(
            "segue_model_rewards",
            "Lessons the model learned from (see segue_model_lessons), by result: positive "
            "(reward 1) or negative (reward 0).",
            ["outcome"],
            registry=r,
        )
        self.log_loss = SummaryTally(
            "segue_model_log_loss",
            "Online log loss of the next-best-action model: each outcome scored before the "
            "model learns from it (mean over a window: rate of _sum over rate of _count).",
            registry=r,
        )
        self.lessons = CounterTally(
            "segue_model_lessons",
            "Settled decisions the model learned from, by how they were settled (outcome, "
            "purchase, expired, evicted; engine/attribution.py) and reward (0 or 1).",
            ["kind", "reward"],
            registry=r,
        )
        self.revenue = CounterTally(
            "segue_attributed_revenue",
            "Order amounts credited to the decision (model's or journey's) that preceded "
            "them within the attribution window (engine/attribution.py).",
            registry=r,
        )
        self.late_outcomes = CounterTally(
            "segue_outcomes_late",
            "Outcomes that came after their decision's attribution window: they taught "
            "nothing (the decision expired with reward 0).",
            registry=r,
        )
        self.explored = CounterTally(
            "segue_decisions_explored",
            "Next-best-action decisions chosen by exploration; over segue_decisions_total "
            "(actions other than none) it is the exploration rate.",
            registry=r,
        )
        self.suppressions = CounterTally(
            "segue_suppressions",
            "Candidate contacts (an action on a channel) refused by the contact policy or "
            "the holdout, by reason: no_consent, suppressed_outcome, quiet_hours, cap_*, "
            "min_gap, holdout.",
            ["reason"],
            registry=r,
        )
        self.deferred = CounterTally(
            "segue_journey_acts_deferred",
            "Journey acts deferred by quiet hours to the end of the customer's night.",
            registry=r,
        )
        self.group_customers = CounterTally(
            "segue_group_customers",
            "Known customers first seen by this worker, by group (treated or holdout).",
            ["group"],
            registry=r,
        )
        self.group_converted = CounterTally(
            "segue_group_converted_customers",
            "Customers who placed their first order, by group: over segue_group_customers "
            "it is the group's conversion rate.",
            ["group"],
            registry=r,
        )
        self.group_orders = CounterTally(
            "segue_group_orders", "Orders placed, by group.", ["group"], registry=r
        )
        self.group_revenue = CounterTally(
            "segue_group_revenue",
            "Order amounts, in the shop's currency, by group: over segue_group_customers it is "
            "revenue per customer, and treated minus holdout is the uplift.",
            ["group"],
            registry=r,
        )
        self.latency = HistogramTally(
            "segue_event_to_decision_seconds",
            "From the event's time to its decision being handed to the producer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.processing = HistogramTally(
            "segue_processing_seconds",
            "Time spent processing one input record inside the worker.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.journey_steps = CounterTally(
            "segue_journey_transitions",
            "Journey entries, acts and exits, by journey and kind (exit reasons grouped).",
            ["journey", "kind"],
            registry=r,
        )
        self.timers_fired = CounterTally(
            "segue_timer_nudges",
            "Timer nudges processed, by result (fired: a journey moved; stale: nothing due).",
            ["result"],
            registry=r,
        )
        self.gc_pauses = Histogram(
            "segue_gc_pause_seconds",
            "Collections of Python's garbage collector, by generation: the worker's event "
            "loop stands still meanwhile, so the slow ones show in the latency tail.",
            ["generation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "segue_event_loop_lag_seconds",
            "How late the worker's event loop (loop=main: fetches, handler, outbox and "
            "producer) ran a callback due at a set time: a loop busy with one long step, "
            "or a process waiting for a CPU, shows here as in the latency tail.",
            ["loop"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.timer_delay = HistogramTally(
            "segue_timer_delay_seconds",
            "From a journey timer's wake time to the decision it took.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.timers_pending = Gauge(
            "segue_timers_indexed",
            "Journey timers this worker has in its due-time index.",
            registry=r,
        )
        self.profiles_unwritten = Gauge(
            "segue_profiles_unwritten",
            "Profiles changed in this worker's cache and not yet written to the profile "
            "table; commits wait for them (SEGUE_PROFILE_WRITE_DELAY_MS).",
            registry=r,
        )
        self.catalogue = Gauge(
            "segue_journey_catalogue_info",
            "The journey catalogue in force; the value is always 1.",
            ["catalogue", "version"],
            registry=r,
        )
        self.catalogue_rejected = Counter(
            "segue_journey_catalogue_rejected",
            "Catalogue records on the control topic the worker refused as invalid.",
            registry=r,
        )
        self.model_updates = Gauge(
            "segue_model_updates",
            "Outcomes the model in use has learned from, over its whole life (snapshots "
            "included): the count in its version.",
            registry=r,
        )
        self.model_snapshot_age = Gauge(
            "segue_model_snapshot_age_seconds",
            "Since the model snapshot this worker last restored or published was taken; "
            "NaN before the first.",
            registry=r,
        )
        self.model_snapshots_published = Counter(
            "segue_model_snapshots_published",
            "Model snapshots this worker published to the model topic (acknowledged).",
            registry=r,
        )
        self.model_snapshot_rejected = Counter(
            "segue_model_snapshot_rejected",
            "Model snapshots on the topic this worker refused at start (corrupt, another "
            "format or feature layout, an unknown class).",
            registry=r,
        )

        self.consumer_lag = Gauge(
            "segue_consumer_lag_records",
            "Records not yet committed behind the highwater, over this worker's partitions of "
            "the topics it processes (not the tables' changelogs).",
            ["topic"],
            registry=r,
        )
        self.last_commit = Gauge(
            "segue_last_commit_timestamp_seconds",
            "Unix time of this worker's last successful offset commit.",
            registry=r,
        )
        self.fetch_min_bytes = Gauge(
            "segue_fetch_min_bytes",
            "Data this worker's fetches wait for at the broker (up to the fetch wait), set "
            "from its input rate (engine/fetchsize.py).",
            registry=r,
        )
        self.rebalances = Counter(
            "segue_rebalances", "Consumer group rebalances this worker took part in.", registry=r
        )
        self.table_keys = Gauge(
            "segue_table_keys",
            "Keys in a state table held by this worker (RocksDB: its estimate).",
            ["table"],
            registry=r,
        )
        self.recovery = Gauge(
            "segue_recovery_seconds",
            "Duration of this worker's last table recovery: from its new partition assignment "
            "being taken (table stores open) to its tables being caught up with their "
            "changelogs and its streams resumed.",
            registry=r,
        )
        build = Gauge(
            "segue_build_info",
            "Versions of this worker; the value is always 1.",
            ["version", "python", "faust"],
            registry=r,
        )
        build.labels(
            version=version("segue"),
            python=platform.python_version(),
            faust=version("faust-streaming"),
        ).set(1)

    def learned(self, lessons: Sequence[Lesson], revenue: float, late: int) -> None:
        """Count what the decisions that one record let go taught, and what it credited."""
        for x in lessons:
            if x.log_loss is not None:
                self.lessons.labels(kind=x.kind, reward=str(int(x.reward))).inc()
                self.rewards.labels(outcome="positive" if x.reward > 0 else "negative").inc()
                self.log_loss.observe(x.log_loss)
        if revenue:
            self.revenue.inc(revenue)
        if late:
            self.late_outcomes.inc(late)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
