"""Input event contracts and the parse step.

The parse step never raises on bad input: every record becomes either an :class:`Event`
or a :class:`Rejection` with an error class and a message (errors are data). The agent
sends rejections to the dead-letter topic.

An event is a JSON object::

    {"event_id": "e-1", "customer_id": "c-42", "type": "add_to_cart",
     "time": "2026-11-24T08:00:00Z", "product_id": "p-7", "price": 19.5}

``time`` is RFC 3339 (with an offset) or epoch milliseconds. The record key, when
present, must equal ``customer_id``: the key decides the partition, and the partition
decides which worker holds the customer's state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

Kind = Literal["str", "number", "int", "bool"]

MAX_ID_LENGTH = 128
"""Longest accepted customer_id, event_id and other identifiers."""


@dataclass(frozen=True, slots=True)
class Field:
    kind: Kind
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    max_length: int = 512


_ID = Field("str", required=True, max_length=MAX_ID_LENGTH)
_OPT_ID = Field("str", max_length=MAX_ID_LENGTH)
_MONEY = Field("number", required=True, minimum=0.0)
_CHANNEL = Field("str", required=True, choices=("email", "sms", "push", "inapp", "agent"))
_DEVICE = Field("str", choices=("mobile", "desktop", "tablet"))

_WEB_COMMON: dict[str, Field] = {"device": _DEVICE, "session_id": _OPT_ID}

# Type-specific fields per source. Fields not named here are kept as they are
# (upstream teams may add attributes) but never read by the engine.
EVENT_TYPES: dict[str, dict[str, dict[str, Field]]] = {
    "web": {
        "page_view": {**_WEB_COMMON, "url": Field("str", max_length=2048)},
        "product_view": {
            **_WEB_COMMON,
            "product_id": _ID,
            "category": Field("str", max_length=64),
            "price": Field("number", minimum=0.0),
        },
        "search": {**_WEB_COMMON, "query": Field("str", required=True, max_length=512)},
        "add_to_cart": {
            **_WEB_COMMON,
            "product_id": _ID,
            "category": Field("str", max_length=64),
            "price": _MONEY,
        },
        "remove_from_cart": {**_WEB_COMMON, "product_id": _ID},
        "checkout_started": {**_WEB_COMMON},
        "login": {**_WEB_COMMON},
        "signup": {**_WEB_COMMON},
    },
    "support": {
        "ticket_opened": {
            "ticket_id": _ID,
            "priority": Field("str", choices=("low", "normal", "high", "urgent")),
        },
        "ticket_updated": {"ticket_id": _ID},
        "ticket_resolved": {"ticket_id": _ID},
        "chat_started": {},
        "csat_submitted": {"score": Field("int", required=True, minimum=1, maximum=5)},
        "nps_submitted": {"score": Field("int", required=True, minimum=0, maximum=10)},
    },
    "purchase": {
        "order_placed": {"order_id": _ID, "amount": _MONEY},
        "order_cancelled": {"order_id": _ID, "amount": _MONEY},
        "refund_issued": {"order_id": _ID, "amount": _MONEY},
        "subscription_started": {"plan": Field("str", max_length=64)},
        "subscription_cancelled": {"plan": Field("str", max_length=64)},
    },
    "outcome": {
        name: {"decision_id": _ID, "channel": Field("str", max_length=16)}
        for name in (
            "delivered",
            "opened",
            "clicked",
            "converted",
            "dismissed",
            "bounced",
            "unsubscribed",
            "complained",
        )
    },
    "consent": {
        "opt_in": {"channel": _CHANNEL},
        "opt_out": {"channel": _CHANNEL},
        "erasure_requested": {},
    },
}


@dataclass(frozen=True, slots=True)
class Event:
    """A validated input event."""

    source: str
    type: str
    event_id: str
    customer_id: str
    time_ms: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted; ``error_class`` is a stable, low-cardinality label."""

    error_class: str
    message: str


def parse_event(
    source: str,
    value: bytes | None,
    key: bytes | None,
    *,
    now_ms: int,
    max_bytes: int = 1_048_576,
    max_future_ms: int = 300_000,
) -> Event | Rejection:
    """Parse and validate one raw record from the input topic of ``source``.

    >>> ev = parse_event("web", b'{"event_id":"e1","customer_id":"c1","type":"login",'
    ...                  b'"time":1700000000000}', b"c1", now_ms=1700000000000)
    >>> (ev.type, ev.customer_id, ev.time_ms)
    ('login', 'c1', 1700000000000)
    >>> parse_event("web", b'{"event_id":', b"c1", now_ms=0).error_class
    'malformed_json'
    """
    types = EVENT_TYPES.get(source)
    if types is None:
        return Rejection("unknown_source", f"no contract for source {source!r}")
    if value is None:
        return Rejection("tombstone", "null value (tombstone) on an event topic")
    if len(value) > max_bytes:
        return Rejection("too_large", f"value is {len(value)} bytes, limit {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 with the same error; tell the two apart.
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection("bad_encoding", "value is not valid UTF-8")
        return Rejection("malformed_json", f"not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(doc).__name__}")

    etype = doc.get("type")
    if not isinstance(etype, str):
        return Rejection("schema_invalid", "field 'type' is missing or not a string")
    fields = types.get(etype)
    if fields is None:
        return Rejection("unknown_event_type", f"{source} has no event type {etype!r}")

    problems: list[str] = []
    event_id = _check("event_id", doc.get("event_id"), _ID, problems)
    customer_id = _check("customer_id", doc.get("customer_id"), _ID, problems)
    time_ms = _event_time(doc.get("time"), problems)
    for name, spec in fields.items():
        _check(name, doc.get(name), spec, problems)
    if problems:
        return Rejection("schema_invalid", "; ".join(problems))
    assert isinstance(event_id, str) and isinstance(customer_id, str) and time_ms is not None

    if key is not None and key != customer_id.encode():
        return Rejection(
            "key_mismatch", "record key differs from customer_id; key records by customer_id"
        )
    if time_ms > now_ms + max_future_ms:
        return Rejection(
            "time_in_future",
            f"event time is {(time_ms - now_ms) / 1000:.0f}s ahead of the clock "
            f"(limit {max_future_ms / 1000:.0f}s)",
        )
    return Event(source, etype, event_id, customer_id, time_ms, doc)


def _check(name: str, value: Any, spec: Field, problems: list[str]) -> Any:
    if value is None:
        if spec.required:
            problems.append(f"field {name!r} is required")
        return None
    ok: bool
    if spec.kind == "str":
        ok = isinstance(value, str)
        if ok and not value.strip():
            problems.append(f"field {name!r} is empty")
            return None
        if ok and len(value) > spec.max_length:
            problems.append(f"field {name!r} is longer than {spec.max_length} characters")
            return None
        if ok and spec.choices is not None and value not in spec.choices:
            problems.append(f"field {name!r} must be one of {', '.join(spec.choices)}")
            return None
    elif spec.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, bool)
    if not ok:
        problems.append(f"field {name!r} must be {'a' if spec.kind != 'int' else 'an'} {spec.kind}")
        return None
    if spec.minimum is not None and value < spec.minimum:
        problems.append(f"field {name!r} must be >= {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        problems.append(f"field {name!r} must be <= {spec.maximum:g}")
    return value


def _event_time(value: Any, problems: list[str]) -> int | None:
    if value is None:
        problems.append("field 'time' is required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            problems.append("field 'time' must be a non-negative epoch in milliseconds")
            return None
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            problems.append("field 'time' is not RFC 3339")
            return None
        if parsed.tzinfo is None:
            problems.append("field 'time' has no UTC offset")
            return None
        return int(parsed.timestamp() * 1000)
    problems.append("field 'time' must be RFC 3339 text or epoch milliseconds")
    return None
