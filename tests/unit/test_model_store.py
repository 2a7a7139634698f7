"""Which snapshot a starting worker takes from the model topic (engine/model_store.choose)."""

from __future__ import annotations

import pytest

import models.snapshot as snapshot
from engine.model_store import choose, policy_key
from engine.settings import Settings
from models.features import NAMES
from models.policy import LogisticHeads
from models.snapshot import encode


def learned(n: int) -> LogisticHeads:
    policy = LogisticHeads()
    for i in range(n):
        policy.learn_one(dict.fromkeys(NAMES, i % 3 / 2), "a:email", float(i % 2))
    return policy


def test_the_newest_snapshot_wins() -> None:
    values = [
        ("t/0@1", encode(learned(3), created_at_ms=1)),
        ("t/0@2", encode(learned(5), created_at_ms=2)),
    ]
    restored = choose(values, fresh=LogisticHeads())
    assert restored.header is not None and restored.header.created_at_ms == 2
    assert restored.policy.version == "logistic-heads/5" and restored.rejected == ()


def test_a_corrupt_newest_snapshot_falls_back_to_the_next_older_valid_one() -> None:
    good = encode(learned(4), created_at_ms=10)
    bad = bytearray(encode(learned(9), created_at_ms=20))
    bad[-5] ^= 0xFF
    restored = choose([("t/0@7", good), ("t/0@8", bytes(bad))], fresh=LogisticHeads())
    assert restored.policy.updates == 4
    assert restored.rejected == ("t/0@8: checksum mismatch: the snapshot is corrupt",)


def test_nothing_usable_starts_fresh_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "LAYOUT", snapshot.LAYOUT ^ 1)
    old_features = encode(learned(6), created_at_ms=5)
    monkeypatch.undo()
    fresh = LogisticHeads()
    restored = choose([("t/0@1", b"garbage bytes here"), ("t/0@2", old_features)], fresh)
    assert restored.policy is fresh and restored.header is None
    assert [r.split(":")[0] for r in restored.rejected] == ["t/0@2", "t/0@1"]  # newest first
    assert "feature layout" in restored.rejected[0]


class OtherHeads(LogisticHeads):
    pass


def test_a_snapshot_of_another_policy_class_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a deploy had added OtherHeads to the project's policies.
    monkeypatch.setattr(
        snapshot, "POLICY_CLASSES", snapshot.POLICY_CLASSES | {f"{__name__}.OtherHeads"}
    )
    monkeypatch.setattr(snapshot, "_PACKAGES", (*snapshot._PACKAGES, "tests."))
    other = OtherHeads()
    other.learn_one({"a": 1.0}, "a:email", 1.0)
    restored = choose([("t/0@1", encode(other, created_at_ms=1))], fresh=LogisticHeads())
    assert restored.header is None
    assert restored.rejected == ("t/0@1: holds a OtherHeads, this worker runs LogisticHeads",)


def test_each_app_and_policy_has_its_own_key() -> None:
    s = Settings.from_env({"SEGUE_APP_ID": "shop-eu"})
    assert policy_key(s, "logistic-heads") == b"shop-eu/logistic-heads"
