"""Policy snapshots (models/snapshot.py): what round-trips, and what is refused, never
crashing the reader whatever the bytes."""

from __future__ import annotations

import os
import pickle
import random
import struct
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.snapshot as snapshot
from models.features import LAYOUT, NAMES
from models.policy import LogisticHeads
from models.snapshot import SnapshotError, decode, encode, read_header, restricted_loads

ARMS = ["cart_reminder:email", "discount_offer:sms", "never_taught:push"]


def learned(n: int = 200, seed: int = 3) -> LogisticHeads:
    rng = random.Random(seed)
    policy = LogisticHeads(learning_rate=0.1)
    for i in range(n):
        x = {name: rng.random() for name in NAMES}
        policy.learn_one(x, ARMS[i % 2], 1.0 if x["cart_items"] > 0.5 else 0.0)
    return policy


def forge(body: bytes, **header: Any) -> bytes:
    """A snapshot with a valid checksum around any body and header: what a writer that
    knows the format (or a bug on our side) could put on the topic."""
    fields = {
        "policy_class": "models.policy.LogisticHeads",
        "policy": "logistic-heads",
        "version": "logistic-heads/0",
        "updates": 0,
        "created_at_ms": 0,
        "layout": LAYOUT,
        "body_bytes": len(body),
        **header,
    }
    fields["checksum"] = snapshot._checksum(fields, body)
    head = snapshot.orjson.dumps(fields, option=snapshot.orjson.OPT_SORT_KEYS)
    return struct.pack(">4sBI", b"SGMS", snapshot.FORMAT, len(head)) + head + body


GOOD = encode(learned(), created_at_ms=1_700_000_000_000)


def test_a_learned_policy_round_trips_with_its_header() -> None:
    policy = learned()
    snap = decode(encode(policy, created_at_ms=42))
    x = dict.fromkeys(NAMES, 0.7)
    assert snap.policy.score_many(x, ARMS) == policy.score_many(x, ARMS)
    assert snap.policy.score_many(x, ARMS)["cart_reminder:email"] != 0.5  # it did learn
    assert snap.policy.version == policy.version == "logistic-heads/200"
    h = snap.header
    assert (h.policy_class, h.policy, h.updates, h.created_at_ms, h.layout) == (
        "models.policy.LogisticHeads",
        "logistic-heads",
        200,
        42,
        LAYOUT,
    )
    assert read_header(encode(policy, created_at_ms=42)) == h


def test_the_restored_policy_keeps_learning_where_it_stopped() -> None:
    policy = learned()
    clone = decode(encode(policy, created_at_ms=0)).policy
    x = dict.fromkeys(NAMES, 0.3)
    policy.learn_one(x, ARMS[0], 1.0)
    clone.learn_one(x, ARMS[0], 1.0)
    assert clone.score_many(x, ARMS) == policy.score_many(x, ARMS)
    assert clone.updates == 201


def test_an_unknown_format_is_refused() -> None:
    newer = GOOD[:4] + bytes([snapshot.FORMAT + 1]) + GOOD[5:]
    with pytest.raises(SnapshotError, match="format 2 is unknown"):
        decode(newer)


@pytest.mark.parametrize("where", ["body", "header"])
def test_a_flipped_bit_is_a_checksum_mismatch(where: str) -> None:
    data = bytearray(GOOD)
    if where == "body":
        data[-10] ^= 0x01
    else:
        at = GOOD.index(b'"updates":200') + len('"updates":2')
        data[at] ^= 0x01  # 200 -> 210: still valid JSON, a lie about the progress
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode(bytes(data))


def test_another_feature_layout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "LAYOUT", LAYOUT ^ 0x5A5A)
    old = encode(learned(), created_at_ms=0)
    monkeypatch.undo()
    assert read_header(old).layout == LAYOUT ^ 0x5A5A  # intact, just learned elsewhere
    with pytest.raises(SnapshotError, match="feature layout"):
        decode(old)


class NotAPolicy(LogisticHeads):
    """A class outside the allow-list, pickled by reference like any other."""


def test_a_class_outside_the_policies_is_refused() -> None:
    with pytest.raises(SnapshotError, match="is not a known policy"):
        decode(encode(NotAPolicy(), created_at_ms=0))


def test_a_header_that_names_a_policy_but_holds_something_else_is_refused() -> None:
    body = pickle.dumps({"weights": [1.0, 2.0]}, protocol=5)
    with pytest.raises(SnapshotError, match=r"holds a builtins\.dict"):
        decode(forge(body))


def test_a_header_that_lies_about_the_updates_is_refused() -> None:
    body = pickle.dumps(learned(n=10), protocol=5)
    with pytest.raises(SnapshotError, match="holds 10 updates, its header says 99"):
        decode(forge(body, updates=99))


class Boom:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        Boom(),
        eval,  # a builtin function, not on the list
        random.Random,  # a class, but of a module outside the list
        snapshot.decode,  # a function of models.*: classes only
        snapshot._Unpickler,  # a private name
    ],
    ids=["os.system", "eval", "random.Random", "models-function", "private"],
)
def test_the_unpickler_refuses_globals_off_the_allow_list(payload: object) -> None:
    body = pickle.dumps(payload, protocol=5)
    with pytest.raises(SnapshotError, match="refusing to unpickle"):
        restricted_loads(body)
    with pytest.raises(SnapshotError, match="refusing to unpickle"):
        decode(forge(body))


def test_the_unpickler_takes_what_policies_are_made_of() -> None:
    from collections import Counter, defaultdict

    value = {
        "counts": Counter(a=2),
        "sums": defaultdict(float, b=1.5),
        "matrix": numpy.arange(6.0).reshape(2, 3),
        "scalar": numpy.float64(0.25),
        "raw": b"\x00\xff",
    }
    loaded = restricted_loads(pickle.dumps(value, protocol=5))
    assert loaded["counts"] == value["counts"] and loaded["sums"] == value["sums"]
    assert (loaded["matrix"] == value["matrix"]).all() and loaded["scalar"] == 0.25
    assert loaded["raw"] == b"\x00\xff"


@pytest.mark.parametrize("size", [0, 3, 9, len(GOOD) // 2, len(GOOD) - 1])
def test_a_truncated_snapshot_is_refused(size: int) -> None:
    with pytest.raises(SnapshotError):
        decode(GOOD[:size])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_a_snapshot_error(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode(b"SGMS\x01" + data if data[:1] == b"!" else data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255))
def test_any_corrupted_byte_is_refused(at: int, xor: int) -> None:
    data = bytearray(GOOD)
    data[at] ^= xor
    with pytest.raises(SnapshotError):
        decode(bytes(data))


BODY = pickle.dumps(learned(n=20), protocol=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(BODY) - 1), st.integers(0, 255)), max_size=4))
def test_a_corrupt_pickle_behind_a_valid_checksum_never_escapes_as_another_error(
    edits: list[tuple[int, int]],
) -> None:
    body = bytearray(BODY)
    for at, value in edits:
        body[at] = value
    try:
        snap = decode(forge(bytes(body), updates=20, version="logistic-heads/20"))
    except SnapshotError:
        return
    assert isinstance(snap.policy, LogisticHeads)  # an edit that changed nothing that matters
