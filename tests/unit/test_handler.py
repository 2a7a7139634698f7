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
from engine.handler import Handler, ProfileCache
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


def test_the_cache_keeps_the_most_recently_used_profiles() -> None:
    cache = ProfileCache(2)
    a, b, c = (Profile(k) for k in ("a", "b", "c"))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now the most recent
    cache.put("c", c)  # evicts b, the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (a, None, c)
    cache.drop("a")
    assert cache.get("a") is None and len(cache) == 1
    off = ProfileCache(0)
    off.put("a", a)
    assert off.get("a") is None


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


@pytest.fixture(params=["memory://", "rocksdb://"])
def handler(tmp_path: Path, request: pytest.FixtureRequest) -> Handler:
    settings = replace(Settings.from_env({}), data_dir=tmp_path, table_store=request.param)
    receiver: Any = build_app(settings).receiver  # type: ignore[attr-defined]
    assert isinstance(receiver, Handler)
    return receiver


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
