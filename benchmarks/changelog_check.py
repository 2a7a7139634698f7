"""Proof that the state benchmark's changelog is the worker's own.

- :func:`self_check`, before anything is seeded: a real worker applies a few simulated
  customers' events; every changelog record it writes must have the key, partition and
  (empty) headers this run writes, and a value the pure core computes from the same
  records (the worker writes a profile late, so some of a customer's versions, in order,
  the last one always: engine/profile_cache.py), and Faust must have created the
  changelog topic as this run creates it.
- :func:`probe`, once a worker has recovered seeded state: one event per partition to a
  seeded customer; the worker's new changelog record for it must equal, byte for byte,
  what the core makes of the seeded profile and that event, so the worker read the very
  bytes this run wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson

from benchmarks.procstats import BenchError
from benchmarks.seeding import (
    ProfileStore,
    Templates,
    changelog_topic,
    core_like_worker,
    customer_id,
    say,
)
from benchmarks.workers import (
    end_offsets,
    produce,
    read_topic,
    start_worker,
    stop_worker,
    topic_shape,
)
from engine.admin import create_topics
from engine.pending import Pending
from engine.profile import Profile
from engine.records import expected_partition
from engine.settings import Settings
from models.simulator import Population
from topics.catalogue import TopicNames

CHECK_CUSTOMERS = 12
"""Simulated customers of the self-check, four activity steps each."""
PROBE_WAIT_SECONDS = 30.0
"""How long after the profile write delay the probe waits for the worker's writes."""


def normalized(value: bytes) -> bytes:
    """A profile with the wall-clock decision times zeroed (the worker's clock is not ours)."""
    doc = orjson.loads(value)
    for item in doc.get("pending", ()):
        item[_AT_MS] = 0  # stored as a list of Pending's fields (engine/pending.py)
    return orjson.dumps(doc)


_AT_MS = [f.name for f in fields(Pending)].index("at_ms")


def changelog_problems(
    changelog: list[Any], expected: dict[tuple[int, bytes], list[bytes]], partitions: int
) -> list[str]:
    """What differs between the worker's changelog records and the ones this run writes."""
    problems = []
    got: dict[tuple[int, bytes], list[bytes]] = {}
    for rec in changelog:
        if rec.key is None or rec.value is None:
            problems.append(f"record without key or value at {rec.partition}@{rec.offset}")
            continue
        if rec.headers:
            problems.append(f"headers {rec.headers!r} at {rec.partition}@{rec.offset}")
        if rec.partition != expected_partition(rec.key, partitions):
            problems.append(f"{rec.key!r} on partition {rec.partition}, not its input partition")
        if Profile.decode(rec.value).encode() != rec.value:
            problems.append(f"the value of {rec.key!r} does not round-trip through Profile")
        got.setdefault((rec.partition, rec.key), []).append(normalized(rec.value))
    wrong = [k for k in expected if not _written_late(got.get(k, []), expected[k])]
    if wrong or not got.keys() <= expected.keys():
        problems.append(
            f"values differ from the core's: {len(got)} keys written by the worker, "
            f"{len(expected)} expected; first mismatch: "
            + (repr(wrong[0]) if wrong else "an extra key")
        )
    return problems


def _written_late(written: list[bytes], made: list[bytes]) -> bool:
    """Whether ``written`` is what a worker that writes a profile late writes of the
    versions ``made`` of it: some of them, in order, the last one included."""
    versions = iter(made)
    return bool(written) and written[-1] == made[-1] and all(v in versions for v in written)


def self_check(base: Settings, tmp: Path, brokers: Sequence[int]) -> dict[str, Any]:
    """Run a worker on a few customers; its changelog must be what this run would write."""
    settings = replace(base, topic_prefix=f"{base.topic_prefix}check.", app_id=f"{base.app_id}-c")
    asyncio.run(create_topics(settings, report=lambda line: None))
    names = TopicNames(settings.topic_prefix)
    pop = Population(CHECK_CUSTOMERS, seed=7, id_prefix="check")
    now_ms = time.time_ns() // 1_000_000
    events = []
    for step in range(CHECK_CUSTOMERS * 4):
        for ev in pop.activity(now_ms - 60_000 + step):
            topic = names.source(ev.pop("source"))
            events.append((topic, str(ev["customer_id"]).encode(), orjson.dumps(ev)))
    started = start_worker(settings, tmp / "check.log", "self-check (empty state)", brokers)
    try:
        sent = asyncio.run(produce(settings, events, in_order=True))
    finally:
        empty = stop_worker(started)
    core, store = core_like_worker(settings), ProfileStore()
    expected: dict[tuple[int, bytes], list[bytes]] = {}
    for rec in sent:
        result = core.ingest(rec, store, now_ms=now_ms)
        store.apply(result)
        for key, profile in result.writes.items():
            assert profile is not None
            slot = (expected_partition(key.encode(), settings.partitions), key.encode())
            expected.setdefault(slot, []).append(normalized(profile.encode()))
    topic = changelog_topic(settings)
    changelog = asyncio.run(read_topic(settings.kafka_bootstrap, topic, settings.partitions))
    problems = changelog_problems(changelog, expected, settings.partitions)
    shape = asyncio.run(topic_shape(settings, topic))
    wanted = {"partitions": settings.partitions, "configs": {"cleanup.policy": "compact"}}
    if shape != wanted:
        problems.append(f"Faust created {topic} as {shape}, this run creates {wanted}")
    if problems:
        raise BenchError("self-check failed:\n  " + "\n  ".join(problems))
    say(f"  self-check: {len(changelog)} changelog records match; topic {shape}")
    return {
        "events": len(sent),
        "changelog_records": len(changelog),
        "faust_changelog_topic": shape,
        "empty_start": empty,
    }


def probe(settings: Settings, templates: Templates, customers: int) -> dict[str, Any]:
    """One page_view for a seeded customer per partition; the worker's changelog record
    for it must be what the core makes of the seeded profile and that event."""
    names, partitions = TopicNames(settings.topic_prefix), settings.partitions
    picks: dict[int, int] = {}
    for i in range(customers):
        picks.setdefault(expected_partition(customer_id(i).encode(), partitions), i)
        if len(picks) == partitions:
            break
    now_ms = time.time_ns() // 1_000_000
    events = []
    for i in picks.values():
        cid = customer_id(i)
        ev = {"event_id": f"{cid}-probe", "customer_id": cid, "type": "page_view", "time": now_ms}
        events.append((names.source("web"), cid.encode(), orjson.dumps(ev | {"url": "/"})))
    bootstrap, topic = settings.kafka_bootstrap, changelog_topic(settings)
    before = asyncio.run(end_offsets(bootstrap, topic, partitions))
    sent = asyncio.run(produce(settings, events))
    # Consumed is not yet written: the worker writes a changed profile late.
    deadline = time.monotonic() + settings.profile_write_delay_ms / 1000 + PROBE_WAIT_SECONDS
    while any(
        end <= before[p]
        for p, end in asyncio.run(end_offsets(bootstrap, topic, partitions)).items()
        if p in picks
    ):
        if time.monotonic() > deadline:
            raise BenchError("probe: the worker did not write the probed profiles in time")
        time.sleep(0.2)
    written = {r.key: r for r in asyncio.run(read_topic(bootstrap, topic, partitions, before))}
    core = core_like_worker(settings)
    store = ProfileStore(lambda key: templates.profile_of(key, partitions))
    for rec in sent:
        result = core.ingest(rec, store, now_ms=now_ms)
        (profile,) = result.writes.values()
        assert profile is not None
        got = written.get(rec.key)
        if got is None or got.value != profile.encode() or got.partition != rec.partition:
            raise BenchError(f"probe: the worker's profile of {rec.key!r} is not the core's")
    say(f"  probe: {len(sent)} seeded profiles updated by the worker exactly as by the core")
    return {"customers": len(sent), "match": True}
