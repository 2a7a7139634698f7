"""Encoded profile sizes after simulated histories run through the pure core.

The issue's bound is 2 KiB per customer on disk, which benchmarks/state.py measures in
RocksDB (it compresses these records about three to one). Here the uncompressed record
is held to that bound on average, and every record to a hard ceiling that keeps the
state of the most active customers bounded. Print the figures for a bigger population:

    python -c "from tests.unit.test_profile_size import report; report(2000)"

The largest records (about 2.4 KB for the most active of 1,000 customers in a day) hold
four pending decisions, a full dedup memory (32 ids), two waiting journeys and the
event counters.
"""

from __future__ import annotations

import random
import statistics

import orjson
import pytest

from engine.decide import DecideConfig
from engine.journey_loader import default_catalogue
from engine.pipeline import Core
from engine.profile import MAX_PENDING, Profile
from engine.records import Record
from models.policy import LogisticHeads
from models.simulator import Population
from topics.catalogue import TopicNames

T0 = 1_800_000_000_000
DAY_MS = 86_400_000
BOUND = 2048
CEILING = 3072


class Tables:
    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.links: dict[str, str] = {}
        self.timers: dict[str, int] = {}
        self.catalogue = default_catalogue()

    def profile(self, key: str) -> Profile | None:
        return self.profiles.get(key)

    def linked(self, anonymous_id: str) -> str | None:
        return self.links.get(anonymous_id)


def simulate(customers: int, *, span_ms: int, answered: float, seed: int = 7) -> list[Profile]:
    """Profiles after ``customers`` simulated customers' history: twelve activities each on
    average (as in ``segue demo``) over ``span_ms``, with channel services reporting an
    outcome for the share ``answered`` of the decisions that act, at once. Journeys run
    as in the worker: a nudge fires each due timer (checked every hundred activities)."""
    tables = Tables()
    offsets: dict[str, int] = {}
    core = Core(
        LogisticHeads(),
        TopicNames("cx."),
        identity_topic="identity",
        stitched_topic="stitched",
        timer_topic="timers",
        cfg=DecideConfig(),
    )
    pop = Population(customers, seed=seed, anonymous_share=0.3, time_scale=0)
    answers = random.Random(seed)

    def feed(topic: str, key: bytes | None, value: bytes | None, now: int) -> None:
        offsets[topic] = offsets.get(topic, 0) + 1
        steps = {"identity": core.link, "stitched": core.stitched, "timers": core.tick}
        step = steps.get(topic, core.ingest)
        result = step(Record(topic, 0, offsets[topic], key, value), tables, now_ms=now)
        for k, p in result.writes.items():
            if p is None:
                tables.profiles.pop(k, None)
            else:
                tables.profiles[k] = p
        tables.links.update(result.links)
        for k, wake in result.timers.items():
            if wake is None:
                tables.timers.pop(k, None)
            else:
                tables.timers[k] = wake
        for send in result.sends:
            if send.topic in ("identity", "stitched"):
                feed(send.topic, send.key, send.value, now)
        decided = [result.decision] if result.decision else []
        for d in decided + result.journey_decisions:
            if d.acts and answers.random() < answered:
                for out in pop.respond(d.to_dict(), now):
                    source = out.pop("source")
                    feed(f"cx.{source}", out["customer_id"].encode(), orjson.dumps(out), now)

    activities = 12 * customers
    for i in range(activities):
        now = T0 + span_ms * i // activities
        for ev in pop.activity(now):
            source = ev.pop("source")
            who = ev.get("customer_id") or ev["anonymous_id"]
            feed(f"cx.{source}", who.encode(), orjson.dumps(ev), now)
        if i % 100 == 0:
            for key in [k for k, wake in tables.timers.items() if wake <= now]:
                nudge = orjson.dumps({"customer_id": key, "now_ms": now})
                feed("timers", key.encode(), nudge, now)
    return list(tables.profiles.values())


def sizes(profiles: list[Profile]) -> tuple[float, int, int]:
    """Mean, 99th percentile and maximum of the encoded sizes, in bytes."""
    ordered = sorted(len(p.encode()) for p in profiles)
    return statistics.mean(ordered), ordered[len(ordered) * 99 // 100], ordered[-1]


SCENARIOS = {
    "demo pace: 60 s, every decision answered": (60_000, 1.0),
    "a day, 9 in 10 decisions answered": (DAY_MS, 0.9),
    "a month, 9 in 10 decisions answered": (30 * DAY_MS, 0.9),
    "stress: a day, half the decisions never answered": (DAY_MS, 0.5),
}


def report(customers: int) -> None:
    for name, (span_ms, answered) in SCENARIOS.items():
        mean, p99, top = sizes(simulate(customers, span_ms=span_ms, answered=answered))
        print(f"{name:50} mean {mean:5.0f}  p99 {p99:5d}  max {top:5d} bytes")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_profiles_stay_within_2_kib_on_average_and_3_kib_each(scenario: str) -> None:
    """Scenario: 600 customers live through a history as the name says. We expect the
    mean encoded profile within 2 KiB, and every profile within 3 KiB."""
    span_ms, answered = SCENARIOS[scenario]
    mean, _, top = sizes(simulate(600, span_ms=span_ms, answered=answered))
    assert mean <= BOUND
    assert top <= CEILING


def test_unanswered_decisions_cost_at_most_a_third_of_the_bound() -> None:
    """Scenario: channel services never report on half the decisions, so the most active
    customers hold MAX_PENDING of them. We expect those to take at most a third of the
    bound: what remains of it is the dedup window's and the customer's own history."""
    profiles = simulate(400, span_ms=DAY_MS, answered=0.5)
    full = [p for p in profiles if len(p.pending) == MAX_PENDING]
    assert full
    worst = max(len(orjson.dumps([x.to_list() for x in p.pending])) for p in full)
    assert worst <= BOUND // 3
