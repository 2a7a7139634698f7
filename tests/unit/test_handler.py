"""The worker's handler runs each delivered record through the core and keeps the decoded
profiles of recent customers, which must behave exactly as decoding the stored bytes
each time (engine/handler.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from benchmarks.core_golden import digest
from engine.app import build_app
from engine.decide import DecideConfig
from engine.handler import Handler
from engine.profile import Profile
from engine.records import expected_partition
from engine.settings import Settings
from models.uplift import UpliftHeads


def test_the_core_decides_the_same_with_profiles_kept_as_objects_as_decoded_each_time() -> None:
    # What makes the cache safe: the core never changes a profile it was handed.
    runs = {
        codec: digest(
            3_000,
            policy=UpliftHeads(),
            cfg=DecideConfig(holdout_share=0.1),
            codec=codec,
            seed=3,
        )
        for codec in (True, False)
    }
    assert runs[True] == runs[False]


def web_record(customer: str, event_id: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    key = customer.encode()
    doc = {
        "event_id": event_id,
        "customer_id": customer,
        "type": "product_view",
        "product_id": "p1",
        "time": time.time_ns() // 1_000_000,
    }
    value = orjson.dumps(doc)
    part = expected_partition(key, 3)
    return ConsumerRecord("cx.web", part, offset, 0, 0, key, value, None, len(key), len(value), [])


def build_handler(tmp_path: Path, store: str, write_delay_ms: int) -> Handler:
    settings = replace(
        Settings.from_env({}),
        data_dir=tmp_path,
        table_store=store,
        profile_write_delay_ms=write_delay_ms,
    )
    receiver: Any = build_app(settings).receiver  # type: ignore[attr-defined]
    assert isinstance(receiver, Handler)
    return receiver


@pytest.fixture(params=["memory://", "rocksdb://"])
def handler(tmp_path: Path, request: pytest.FixtureRequest) -> Handler:
    """A handler that writes each changed profile at once."""
    return build_handler(tmp_path, request.param, 0)


@pytest.fixture(params=["memory://", "rocksdb://"])
def late_handler(tmp_path: Path, request: pytest.FixtureRequest) -> Handler:
    """A handler that writes changed profiles two seconds late."""
    return build_handler(tmp_path, request.param, 2_000)


def test_a_cached_profile_is_the_one_stored_and_is_not_decoded_again(
    handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[bytes] = []
    original = Profile.decode

    def counting(raw: bytes) -> Profile:
        decoded.append(raw)
        return original(raw)

    monkeypatch.setattr(Profile, "decode", staticmethod(counting))
    first = web_record("c-1", "e1", 0)
    tp = TP(first.topic, first.partition)
    handler.deliver(tp, [first])
    cached = handler.cache.get("c-1")
    assert cached is not None and cached.web_events == 1
    # The object kept is the one whose bytes went to the table.
    assert handler._tables.profiles.get(b"c-1", first.partition) == cached.encode()
    # In the store itself once the slice is done (RocksDB: its staged batch written).
    assert handler._tables.profiles._rows(first.partition).get(b"c-1") == cached.encode()
    handler.deliver(tp, [web_record("c-1", "e2", 1)])
    assert decoded == []  # read from the cache
    handler.forget()  # the partitions change
    assert len(handler.cache) == 0
    handler.deliver(tp, [web_record("c-1", "e3", 2)])
    assert len(decoded) == 1  # read from the table once, then kept again
    again = handler.cache.get("c-1")
    assert again is not None and again.web_events == 3


def test_a_changed_profile_is_written_late_and_holds_the_commit_until_then(
    late_handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(late_handler.cache, "_clock", lambda: clock[0])
    first = web_record("c-1", "e1", 5)
    tp, part = TP(first.topic, first.partition), first.partition
    profiles = late_handler._tables.profiles
    late_handler.deliver(tp, [first])
    late_handler.deliver(tp, [web_record("c-1", "e2", 6)])
    kept = late_handler.cache.get("c-1")
    assert kept is not None and kept.web_events == 2
    assert profiles.get(b"c-1", part) is None  # not written yet
    assert late_handler.held(tp) == 5  # a commit stops before the first change
    gauge = late_handler._metrics.registry.get_sample_value("segue_profiles_unwritten")
    assert gauge == 1
    clock[0] += 2.0
    late_handler.write_due()  # what the worker's timer calls between deliveries
    # Written once, the last version, into the store itself.
    assert profiles._rows(part).get(b"c-1") == kept.encode()
    assert late_handler.held(tp) is None
    late_handler.deliver(tp, [web_record("c-1", "e3", 7)])
    assert late_handler.held(tp) == 7
    late_handler.forget()  # the partitions change, or the worker stops: all written
    assert late_handler.held(tp) is None and len(late_handler.cache) == 0
    stored = profiles._rows(part).get(b"c-1")
    assert stored is not None and Profile.decode(stored).web_events == 3
