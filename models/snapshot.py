"""A learned policy as bytes for the model topic, and back, refusing what it cannot trust.

A snapshot is a small header a reader can check without running anything, then the
pickled policy (River estimators have no other stable serialisation, and pickling is
what the policy conformance suite tests)::

    b"SGMS" | format (1 byte) | header length (4 bytes, big-endian) | header | body

    header: JSON, keys sorted: policy_class, policy, version, updates, created_at_ms,
            layout (models.features.LAYOUT), body_bytes, checksum
    body:   pickle (protocol 5) of the policy

The checksum is the SHA-256 of the header without it plus the body, so a flipped bit
anywhere, header included, is caught before anything is unpickled. ``decode`` refuses
with a ``SnapshotError`` (one line, for the log) an unknown format, a checksum mismatch,
another feature layout (weights learned on other features mean nothing on these: a
deploy that changes features starts fresh), a class outside ``POLICY_CLASSES``, and any
global outside the unpickler's allow-list.

The allow-list narrows what a forged snapshot can reach, but unpickling is never safe
against a determined writer: the model topic must stay write-restricted to the workers
(Kafka ACLs), like the changelog topics whose state the workers trust just as much.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from models.features import LAYOUT
from models.policy import Policy

MAGIC = b"SGMS"
FORMAT = 1
"""Raise when the layout above changes; a reader refuses formats it does not know."""
_PREFIX = struct.Struct(">4sBI")

POLICY_CLASSES: frozenset[str] = frozenset(
    {"models.policy.LogisticHeads", "models.uplift.UpliftHeads"}
)
"""The policies a snapshot may hold, as ``module.qualname``: add each new policy class."""

_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list"}
    | {"set", "slice", "str", "tuple"}
)
_EXACT: frozenset[tuple[str, str]] = frozenset(
    {("builtins", name) for name in _BUILTINS}
    | {("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")}
    # numpy arrays and scalars pickle through a few module-level helpers; numpy 2 moved
    # them from numpy.core to numpy._core, and a snapshot may come from either side.
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    | {
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")
        for module, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        )
    }
)
_PACKAGES = ("models.", "river.")
"""Modules whose classes (never functions) a snapshot may name: the policies' own and
River's estimators, optimisers, losses and their Rust-backed vectors."""


class SnapshotError(ValueError):
    """One line on why a snapshot is not used."""


class Learner(Policy, Protocol):
    """A policy that counts what it learned: the count is a snapshot's progress."""

    updates: int


@dataclass(frozen=True, slots=True)
class Header:
    policy_class: str
    policy: str
    version: str
    updates: int
    created_at_ms: int
    layout: int
    body_bytes: int
    checksum: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    header: Header
    policy: Learner


def encode(policy: Learner, *, created_at_ms: int) -> bytes:
    """The snapshot of ``policy`` as it is now.

    >>> from models.policy import LogisticHeads
    >>> p = LogisticHeads()
    >>> p.learn_one({"a": 1.0}, "x:email", 1.0)
    >>> snap = decode(encode(p, created_at_ms=1_000))
    >>> snap.header.version, snap.header.created_at_ms, snap.policy.version
    ('logistic-heads/1', 1000, 'logistic-heads/1')
    """
    body = pickle.dumps(policy, protocol=5)
    fields = {
        "policy_class": _qualified(type(policy)),
        "policy": policy.name,
        "version": policy.version,
        "updates": policy.updates,
        "created_at_ms": created_at_ms,
        "layout": LAYOUT,
        "body_bytes": len(body),
    }
    fields["checksum"] = _checksum(fields, body)
    head = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return _PREFIX.pack(MAGIC, FORMAT, len(head)) + head + body


def read_header(data: bytes) -> Header:
    """The header of a snapshot whose bytes are intact; nothing is unpickled."""
    header, _ = _split(data)
    return header


def decode(data: bytes) -> Snapshot:
    """The policy a snapshot holds, or SnapshotError saying why it cannot be used."""
    header, body = _split(data)
    if header.layout != LAYOUT:
        raise SnapshotError(
            f"learned on feature layout {header.layout:#06x}, this build has {LAYOUT:#06x} "
            "(models/features.py changed): its weights do not fit these features"
        )
    if header.policy_class not in POLICY_CLASSES:
        raise SnapshotError(f"policy class {header.policy_class!r} is not a known policy")
    policy = restricted_loads(body)
    if _qualified(type(policy)) != header.policy_class:
        raise SnapshotError(
            f"holds a {_qualified(type(policy))}, its header says {header.policy_class}"
        )
    updates = getattr(policy, "updates", None)  # a corrupt pickle may leave it out
    if updates != header.updates:
        raise SnapshotError(f"holds {updates} updates, its header says {header.updates}")
    return Snapshot(header, policy)


def restricted_loads(body: bytes) -> Any:
    """Unpickle with only the globals a policy needs; SnapshotError for anything else,
    including any error of a corrupt pickle."""
    try:
        return _Unpickler(io.BytesIO(body)).load()
    except SnapshotError:
        raise
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise SnapshotError(f"cannot unpickle the policy: {type(exc).__name__}: {exc}") from None


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _EXACT:
            return super().find_class(module, name)
        if module.startswith(_PACKAGES) and name.isidentifier() and not name.startswith("_"):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise SnapshotError(f"refusing to unpickle {module}.{name}: not on the allow-list")


_HEADER_TYPES: dict[str, type] = {
    "policy_class": str,
    "policy": str,
    "version": str,
    "updates": int,
    "created_at_ms": int,
    "layout": int,
    "body_bytes": int,
    "checksum": str,
}


def _split(data: bytes) -> tuple[Header, bytes]:
    if len(data) < _PREFIX.size:
        raise SnapshotError(f"{len(data)} bytes: too short for a snapshot")
    magic, fmt, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a Segue model snapshot (no SGMS magic)")
    if fmt != FORMAT:
        raise SnapshotError(f"snapshot format {fmt} is unknown to this build (it reads {FORMAT})")
    head = data[_PREFIX.size : _PREFIX.size + head_len]
    body = data[_PREFIX.size + head_len :]
    try:
        fields = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"unreadable snapshot header: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != set(_HEADER_TYPES):
        raise SnapshotError("unreadable snapshot header: not the fields of this format")
    for name, kind in _HEADER_TYPES.items():
        if not isinstance(fields[name], kind) or isinstance(fields[name], bool):
            raise SnapshotError(f"unreadable snapshot header: {name} is not {kind.__name__}")
    header = Header(**fields)
    if len(head) != head_len or header.body_bytes != len(body):
        raise SnapshotError("truncated snapshot")
    expected = {k: v for k, v in fields.items() if k != "checksum"}
    if _checksum(expected, body) != header.checksum:
        raise SnapshotError("checksum mismatch: the snapshot is corrupt")
    return header, body


def _checksum(fields: dict[str, Any], body: bytes) -> str:
    digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    digest.update(body)
    return digest.hexdigest()


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
