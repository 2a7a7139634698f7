"""Per-customer state for the state benchmark: realistic profiles, written as the worker would.

Running a million customers through a worker at a few thousand events per second takes
hours, so the state benchmark builds the table another way:

1. **Templates.** A few thousand simulated customers (``models.simulator``) each live a
   history of 1 to 150 activity steps spread over 30 days, applied through the pure core
   (:class:`engine.pipeline.Core`) exactly as the worker applies them: parse, dedupe,
   profile update, decisions at decision points, outcomes that close half of the
   decisions acted on (an ignored email never reports back). Offsets are those of busy
   ``cx.*`` topics, so the profile's offset map is as long as in production.
2. **Clones.** Customer ``i`` gets the id ``c0000042``-style :func:`customer_id` and the
   profile of a template of its own partition with the template's id replaced by its own,
   everywhere it occurs (profile, event ids, pending decisions).
3. **The changelog.** Each profile goes to ``<app_id>-profiles-changelog`` with the key,
   value, headers and partition the worker uses: key = customer id bytes, value =
   ``Profile.encode()``, no headers, partition = the customer's input partition (Kafka's
   murmur2 of the key; see :func:`engine.pipeline.expected_partition`). The state
   benchmark checks this against a real worker's own changelog before it relies on it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from engine.admin import admin_client
from engine.app import PROFILE_TABLE, build_core
from engine.journey_loader import default_catalogue
from engine.pipeline import Core
from engine.profile import Profile
from engine.records import Record, expected_partition
from engine.result import Result
from engine.settings import Settings
from models.simulator import Population
from topics.catalogue import TopicNames

TEMPLATE_ID = "tpl-000000"
"""The one customer of ``Population(1, id_prefix="tpl")``: every template's own id."""
TEMPLATE_TOPICS = TopicNames("cx.")
OFFSET_BASE = 100_000_000
"""Template events sit at offsets past 10^8, as on input topics that have run a while."""
MEAN_STEPS = 12.0
MAX_STEPS = 150
HISTORY_MS = 30 * 86_400_000
ANSWERED_SHARE = 0.5
"""Share of the decisions acted on whose outcome (converted or dismissed) comes back."""
SEND_WINDOW = 20_000
"""Records handed to the producer before waiting for their acks: bounds memory."""


def say(line: str) -> None:
    print(line, flush=True)


def customer_id(i: int) -> str:
    return f"c{i:07d}"


def core_like_worker(settings: Settings) -> Core:
    """The core as ``engine.app.build_app`` builds it from the same settings."""
    return build_core(settings)


class ProfileStore:
    """The profiles table as the worker's agents see it: encoded bytes by key, decoded on
    read, encoded on write. ``fallback`` supplies the value of a key never written here
    (a table prefilled with seeded profiles, without holding them all in memory)."""

    def __init__(self, fallback: Callable[[str], bytes | None] = lambda key: None) -> None:
        self.values: dict[str, bytes | None] = {}
        self.fallback = fallback
        self.catalogue = default_catalogue()

    def raw(self, key: str) -> bytes | None:
        return self.values[key] if key in self.values else self.fallback(key)

    def profile(self, key: str) -> Profile | None:
        stored = self.raw(key)
        return Profile.decode(stored) if stored is not None else None

    def linked(self, anonymous_id: str) -> str | None:
        return None

    def apply(self, result: Result) -> int:
        """Store ``result``'s writes as the agent does; returns how many profiles it wrote."""
        for key, profile in result.writes.items():
            self.values[key] = None if profile is None else profile.encode()
        return len(result.writes)


# --- templates ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Templates:
    by_partition: tuple[tuple[bytes, ...], ...]
    """Encoded template profiles, grouped by the partition their offsets name."""
    events: int
    seconds: float

    def for_customer(self, i: int, partitions: int) -> tuple[int, bytes, bytes]:
        """(partition, key, value) of customer ``i``'s seeded profile."""
        key = customer_id(i).encode()
        partition = expected_partition(key, partitions)
        group = self.by_partition[partition]
        return partition, key, group[i % len(group)].replace(TEMPLATE_ID.encode(), key)

    def profile_of(self, customer: str, partitions: int) -> bytes:
        """The seeded profile of ``customer`` (a :func:`customer_id`)."""
        return self.for_customer(int(customer[1:]), partitions)[2]

    def sizes(self) -> list[int]:
        return sorted(len(t) for group in self.by_partition for t in group)


def make_templates(count: int, partitions: int, *, end_ms: int, seed: int) -> Templates:
    """``count`` distinct profiles from simulated histories, ``count / partitions`` per
    partition, each history ending before ``end_ms``."""
    started = time.perf_counter()
    core = template_core()
    groups: list[list[bytes]] = [[] for _ in range(partitions)]
    events = 0
    for t in range(count):
        partition = t % partitions
        profile, n = _template(core, partition, end_ms=end_ms, seed=seed * 1_000_003 + t)
        groups[partition].append(profile)
        events += n
    took = time.perf_counter() - started
    return Templates(tuple(tuple(g) for g in groups), events, round(took, 2))


def template_core() -> Core:
    core = core_like_worker(replace(Settings(), topic_prefix=TEMPLATE_TOPICS.prefix))
    # No key-to-partition check: every template has one id, its offsets name its partition.
    return replace(core, limits=replace(core.limits, partitions=0))


def _template(core: Core, partition: int, *, end_ms: int, seed: int) -> tuple[bytes, int]:
    rng = random.Random(seed)
    pop = Population(1, seed=seed, id_prefix="tpl", time_scale=0)
    store = ProfileStore()
    steps = min(MAX_STEPS, 1 + int(rng.expovariate(1 / MEAN_STEPS)))
    gaps = sorted(rng.randrange(HISTORY_MS) for _ in range(steps))
    offsets: dict[str, int] = {}
    answers: list[dict[str, Any]] = []
    events = 0
    for gap in gaps:
        now_ms = end_ms - HISTORY_MS + gap
        batch, answers = (answers, []) if answers else (pop.activity(now_ms), [])
        for ev in batch:
            ev["time"] = now_ms
            topic = TEMPLATE_TOPICS.source(ev.pop("source"))
            offsets[topic] = offsets.get(topic, OFFSET_BASE + rng.randrange(OFFSET_BASE)) + 1
            key = TEMPLATE_ID.encode()
            rec = Record(topic, partition, offsets[topic], key, orjson.dumps(ev))
            result = core.ingest(rec, store, now_ms=now_ms)
            store.apply(result)
            events += 1
            d = result.decision
            if d is not None and d.acts and rng.random() < ANSWERED_SHARE:
                answers += pop.respond(d.to_dict(), now_ms)
    value = store.raw(TEMPLATE_ID)
    assert value is not None, "a template history always writes its profile"
    return value, events


# --- activity on seeded customers -----------------------------------------------------


def activity(
    customers: Sequence[str], names: TopicNames, *, now_ms: int, seed: int
) -> list[tuple[str, bytes, bytes]]:
    """One simulated activity step (one or two events) of each customer, in random order:
    (topic, key, value) records as upstream apps send them."""
    rng = random.Random(seed)
    shapes = Population(1000, seed=seed, id_prefix="shape")
    order = list(customers)
    rng.shuffle(order)
    records = []
    for n, cid in enumerate(order):
        for j, ev in enumerate(shapes.activity(now_ms)):
            topic = names.source(ev.pop("source"))
            ev |= {"customer_id": cid, "event_id": f"{cid}-a{n}-{j}", "time": now_ms}
            records.append((topic, cid.encode(), orjson.dumps(ev)))
    return records


# --- the changelog --------------------------------------------------------------------


def changelog_topic(settings: Settings) -> str:
    """The profiles table's changelog topic, as Faust names it."""
    return f"{settings.app_id}-{PROFILE_TABLE}-changelog"


async def create_changelog(settings: Settings) -> None:
    """The table's changelog as Faust creates it when it is missing (compacted, the
    table's partition count, the app's replication factor; nothing else set)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        topic = NewTopic(
            changelog_topic(settings),
            settings.partitions,
            settings.replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
        await admin.create_topics([topic])
    finally:
        await admin.close()


async def write_changelog(
    bootstrap: str, topic: str, records: Iterator[tuple[int, bytes, bytes]], total: int
) -> dict[str, float]:
    """Produce (partition, key, value) records to ``topic`` as the worker's changelog
    producer does (explicit partition, no headers, no compression); waits for every ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    sent = size = 0
    started = time.perf_counter()
    next_report = started + 5.0
    try:
        pending: list[asyncio.Future[Any]] = []
        for partition, key, value in records:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            sent += 1
            size += len(key) + len(value)
            if len(pending) >= SEND_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
                if time.perf_counter() >= next_report:
                    rate = sent / (time.perf_counter() - started)
                    say(f"  changelog {sent:>10,} / {total:,} profiles  {rate:>8,.0f}/s")
                    next_report += 5.0
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    took = time.perf_counter() - started
    return {
        "records": sent,
        "bytes": size,
        "seconds": round(took, 2),
        "records_per_second": round(sent / took, 1),
    }
