"""The parse step: raw record in, a validated :class:`Event` or a :class:`Rejection` out.

It never raises on bad input (errors are data); the agent dead-letters rejections.
Three envelopes are accepted, told apart by the headers:

- plain JSON: the value is the event object (``content-type`` absent or ``application/json``);
- CloudEvents 1.0 binary mode: ``ce_id``, ``ce_type``, ``ce_source``, ``ce_specversion``
  (and ``ce_time``) headers, the value is the event's data;
- CloudEvents 1.0 structured mode: ``content-type: application/cloudevents+json``, the
  value is the whole CloudEvent with the event in ``data``.

A CloudEvents ``type`` names the event type in its last dotted segment
(``com.shop.web.add_to_cart`` or just ``add_to_cart``); ``subject`` may carry the
customer id. The record key, when present, must equal ``customer_id`` (or the
``anonymous_id`` of an anonymous web event): the key decides the partition, and the
partition decides which worker holds the state.
"""

from __future__ import annotations

import math
import re
import sys
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from engine.frozen import assembled
from topics.contracts import CURRENT, ENVELOPE, FORMATS, Contract, Field, Format

CE_STRUCTURED = "application/cloudevents+json"
JSON_TYPES = ("application/json", "text/json")
_NO_HEADERS: Mapping[str, str] = {}
"""The headers of a record that has none (read only)."""


@dataclass(frozen=True)
class Event:
    """A validated input event. ``data`` is the whole event object (envelope included).

    Not slotted, for the reason ``engine.profile.Profile`` is not: ``_validate`` sets the
    instance dict whole instead of eight ``object.__setattr__`` calls: 6,400 instructions
    where ``__init__`` took 13,300 (callgrind), on every event."""

    source: str
    type: str
    event_id: str
    customer_id: str | None
    time_ms: int
    data: Mapping[str, Any]
    anonymous_id: str | None = None
    origin: str = ""
    """The CloudEvents ``source`` when the event came as one; part of its identity."""

    @property
    def dedup_key(self) -> str:
        return f"{self.source}/{self.origin}/{self.event_id}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted; ``error_class`` is a stable, low-cardinality label."""

    error_class: str
    message: str


def parse_event(
    source: str,
    value: bytes | None,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
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
    >>> from engine.frozen import is_assembled
    >>> is_assembled(ev), ev == Event("web", "login", "e1", "c1", 1700000000000, ev.data)
    (True, True)
    >>> parse_event("web", b'{"event_id":', b"c1", now_ms=0).error_class
    'malformed_json'
    >>> ce = [("ce_specversion", b"1.0"), ("ce_id", b"e2"), ("ce_source", b"/shop"),
    ...       ("ce_type", b"com.shop.web.search"), ("ce_time", b"2023-11-14T22:13:20Z")]
    >>> parse_event("web", b'{"customer_id":"c1","query":"boots"}', b"c1", ce,
    ...             now_ms=1700000000000).time_ms
    1700000000000
    """
    if value is None:
        return Rejection("tombstone", "null value (tombstone) on an event topic")
    if len(value) > max_bytes:
        return Rejection("too_large", f"value is {len(value)} bytes, limit {max_bytes}")
    if headers:
        hdrs: Mapping[str, str] = _headers(headers)
        content_type = hdrs.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in (CE_STRUCTURED, *JSON_TYPES):
            return Rejection(
                "unsupported_content_type",
                f"content-type {content_type!r}: expected application/json or {CE_STRUCTURED}",
            )
    else:  # most records: plain JSON, no header to read (see ``_well_formed`` for what
        # this and its text loop saved together)
        hdrs, content_type = _NO_HEADERS, ""
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

    origin = ""
    if content_type == CE_STRUCTURED:
        unwrapped = _from_structured(doc)
        if isinstance(unwrapped, Rejection):
            return unwrapped
        doc, origin = unwrapped
    elif "ce_id" in hdrs or "ce_specversion" in hdrs:
        unwrapped = _from_binary(doc, hdrs)
        if isinstance(unwrapped, Rejection):
            return unwrapped
        doc, origin = unwrapped
    return _validate(source, doc, key, origin, now_ms=now_ms, max_future_ms=max_future_ms)


def _validate(
    source: str,
    doc: dict[str, Any],
    key: bytes | None,
    origin: str,
    *,
    now_ms: int,
    max_future_ms: int,
) -> Event | Rejection:
    etype = doc.get("type")
    if not isinstance(etype, str):
        return Rejection("schema_invalid", "field 'type' is missing or not a string")
    plan = _PLANS.get((source, etype))
    if plan is None:
        return Rejection("unknown_event_type", f"{source} has no event type {etype!r}")

    # Any until checked: ``_well_formed`` or ``_checked`` vouches for their types.
    event_id: Any = doc.get("event_id")
    customer_id: Any = doc.get("customer_id")
    time_ms: Any = doc.get("time")
    anonymous_id = doc.get("anonymous_id") if plan.anonymous else None
    if not (
        type(time_ms) is int
        and time_ms >= 0
        and (customer_id is not None or anonymous_id is not None)
        and _well_formed(doc, plan)
    ):
        # Something is amiss (or the time is RFC 3339 text): field by field, each
        # problem named.
        checked = _checked(doc, plan.contract, anonymous_id)
        if isinstance(checked, Rejection):
            return checked
        event_id, customer_id, time_ms = checked

    # Text by now (``_well_formed`` or ``_checked`` saw to it), so no ``str()`` call.
    identity: Any = customer_id if customer_id is not None else anonymous_id
    if key is not None and key != identity.encode():
        return Rejection(
            "key_mismatch",
            "record key differs from customer_id (or anonymous_id when there is no "
            "customer_id); key records by the person they are about",
        )
    if time_ms > now_ms + max_future_ms:
        return Rejection(
            "time_in_future",
            f"event time is {(time_ms - now_ms) / 1000:.0f}s ahead of the clock "
            f"(limit {max_future_ms / 1000:.0f}s)",
        )
    # ``Event(...)``, its instance dict set whole in field order (``assembled``).
    return assembled(
        Event,
        {
            "source": source,
            "type": etype,
            "event_id": event_id,
            "customer_id": customer_id,
            "time_ms": time_ms,
            "data": doc,
            "anonymous_id": anonymous_id,
            "origin": origin,
        },
    )


def _checked(
    doc: dict[str, Any], contract: Contract, anonymous_id: Any
) -> tuple[str, str | None, int] | Rejection:
    """The event id, customer id and time of ``doc``, or every problem with it."""
    problems: list[str] = []
    event_id = _check("event_id", doc.get("event_id"), ENVELOPE["event_id"], problems)
    customer_id = _check("customer_id", doc.get("customer_id"), ENVELOPE["customer_id"], problems)
    time_ms = _event_time(doc.get("time"), problems)
    for name, spec in contract.fields.items():
        _check(name, doc.get(name), spec, problems)
    if doc.get("customer_id") is None:
        if not contract.anonymous:
            problems.append("field 'customer_id' is required")
        elif anonymous_id is None:
            problems.append("field 'customer_id' or 'anonymous_id' is required")
    if problems:
        return Rejection("schema_invalid", "; ".join(problems))
    assert isinstance(event_id, str) and time_ms is not None
    return event_id, customer_id, time_ms


@dataclass(frozen=True, slots=True)
class _Plan:
    """What validating one event type takes, worked out once: its contract, and its
    fields with the envelope's ids as plain tuples for ``_well_formed``."""

    contract: Contract
    anonymous: bool
    texts: tuple[tuple[str, bool, int, tuple[str, ...] | None, Format | None], ...]
    """(name, required, max_length, choices, format) per text field without bounds;
    ``max_length`` is ``sys.maxsize`` when the field has none."""
    rules: tuple[tuple[str, str, bool, Any, Any, Any, Any, Any], ...]
    """(name, kind, required, max_length, choices, minimum, maximum, format) per other
    field."""


def _plan(contract: Contract) -> _Plan:
    specs = {"event_id": ENVELOPE["event_id"], "customer_id": ENVELOPE["customer_id"]}
    specs.update(contract.fields)
    texts = tuple(
        (
            name,
            s.required,
            sys.maxsize if s.max_length is None else s.max_length,
            s.choices,
            s.format,
        )
        for name, s in specs.items()
        if s.kind == "str" and s.minimum is None and s.maximum is None
    )
    rules = tuple(
        (name, s.kind, s.required, s.max_length, s.choices, s.minimum, s.maximum, s.format)
        for name, s in specs.items()
        if not (s.kind == "str" and s.minimum is None and s.maximum is None)
    )
    return _Plan(contract, contract.anonymous, texts, rules)


_PLANS: Mapping[tuple[str, str], _Plan] = {(c.source, c.type): _plan(c) for c in CURRENT.values()}
"""By (source, type): the contract in force (``topics.contracts.CURRENT``), planned."""


def _well_formed(doc: Mapping[str, Any], plan: _Plan) -> bool:
    """True when every field passes its contract: the common case, told in one pass
    without a call per field (the field by field check, which names each problem, was
    most of the parse step). False on any doubt: ``_checked`` then decides, so both
    accept exactly the same events. The same rules as ``_check``, for exact JSON types
    (orjson makes no subclasses).

    Text fields, most of them, go first in a loop of their own that asks only what a
    text field can fail. With ``parse_event`` skipping the header work of a record
    without headers, 4,000 instructions per decision point less (callgrind, 645,000 ->
    641,000). The order does not matter: the answer is whether all fields pass. (Tried
    and dropped: the plain text fields checked all at once by ``map`` over ``dict.get``,
    ``type``, ``str.strip`` and ``len``: this whole check took 25,900 instructions per
    event then, 15,400 as it is; callgrind, ``_well_formed`` alone over 1,000 events.)"""
    get = doc.get
    for name, required, longest, choices, fmt in plan.texts:
        value = get(name)
        if value is None:
            if required:
                return False
        elif (
            type(value) is not str
            or not value.strip()
            or len(value) > longest
            or (choices is not None and value not in choices)
            or (fmt is not None and _misformatted(fmt, value) is not None)
        ):
            return False
    for name, kind, required, longest, choices, low, high, fmt in plan.rules:
        value = get(name)
        if value is None:
            if required:
                return False
            continue
        if kind == "str":
            kind_ok = (
                type(value) is str
                and bool(value.strip())
                and (longest is None or len(value) <= longest)
                and (choices is None or value in choices)
                and (fmt is None or _misformatted(fmt, value) is None)
            )
        elif kind == "number":
            kind_ok = type(value) is int or (type(value) is float and math.isfinite(value))
        elif kind == "int":
            kind_ok = type(value) is int
        elif kind == "bool":
            kind_ok = type(value) is bool
        else:
            kind_ok = type(value) is dict or type(value) is list
        if not kind_ok or (low is not None and value < low) or (high is not None and value > high):
            return False
    return True


def _headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """Header names lower-cased (HTTP-style), values as text; the last one of a name wins."""
    out: dict[str, str] = {}
    for name, raw in headers:
        out[name.lower()] = raw.decode("utf-8", "replace") if raw is not None else ""
    return out


def _event_type(ce_type: str) -> str:
    return ce_type.rsplit(".", 1)[-1]


def _from_binary(
    data: dict[str, Any], hdrs: Mapping[str, str]
) -> tuple[dict[str, Any], str] | Rejection:
    missing = [h for h in ("ce_specversion", "ce_id", "ce_type", "ce_source") if not hdrs.get(h)]
    if missing:
        return Rejection(
            "cloudevents_invalid", f"binary-mode headers missing: {', '.join(missing)}"
        )
    if hdrs["ce_specversion"] != "1.0":
        return Rejection(
            "cloudevents_invalid", f"specversion {hdrs['ce_specversion']!r} is not 1.0"
        )
    doc = {**data, "event_id": hdrs["ce_id"], "type": _event_type(hdrs["ce_type"])}
    if hdrs.get("ce_time"):
        doc["time"] = hdrs["ce_time"]
    if hdrs.get("ce_subject") and "customer_id" not in doc:
        doc["customer_id"] = hdrs["ce_subject"]
    return doc, hdrs["ce_source"]


def _from_structured(ce: dict[str, Any]) -> tuple[dict[str, Any], str] | Rejection:
    missing = [a for a in ("specversion", "id", "type", "source") if not isinstance(ce.get(a), str)]
    if missing:
        return Rejection("cloudevents_invalid", f"attributes missing: {', '.join(missing)}")
    if ce["specversion"] != "1.0":
        return Rejection("cloudevents_invalid", f"specversion {ce['specversion']!r} is not 1.0")
    data = ce.get("data")
    if not isinstance(data, dict):
        return Rejection("cloudevents_invalid", "'data' must be a JSON object")
    doc = {**data, "event_id": ce["id"], "type": _event_type(ce["type"])}
    if "time" in ce:
        doc["time"] = ce["time"]
    if isinstance(ce.get("subject"), str) and "customer_id" not in doc:
        doc["customer_id"] = ce["subject"]
    return doc, ce["source"]


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
        if ok and spec.max_length is not None and len(value) > spec.max_length:
            problems.append(f"field {name!r} is longer than {spec.max_length} characters")
            return None
        if ok and spec.choices is not None and value not in spec.choices:
            problems.append(f"field {name!r} must be one of {', '.join(spec.choices)}")
            return None
        if ok and spec.format is not None and (why := _misformatted(spec.format, value)):
            problems.append(f"field {name!r} {why}")
            return None
    elif spec.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif spec.kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, dict | list)
    if not ok:
        problems.append(
            f"field {name!r} must be {'an' if spec.kind in ('int', 'object') else 'a'} {spec.kind}"
        )
        return None
    if spec.minimum is not None and value < spec.minimum:
        problems.append(f"field {name!r} must be >= {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        problems.append(f"field {name!r} must be <= {spec.maximum:g}")
    return value


_SHAPES = {name: re.compile(pattern) for name, pattern in FORMATS.items()}
_FORMAT_HINTS: Mapping[Format, str] = {
    "country": "must be an ISO 3166-1 alpha-2 code in upper case, such as 'DE'",
    "timezone": "must be an IANA time zone name, such as 'Europe/Berlin'",
}


def _misformatted(fmt: Format, value: str) -> str | None:
    """Why ``value`` is not of format ``fmt``, or None when it is."""
    if not _SHAPES[fmt].match(value):
        return _FORMAT_HINTS[fmt]
    if fmt == "timezone" and not _known_timezone(value):
        return f"is not a time zone in the tz database: {value!r}"
    return None


@lru_cache(maxsize=1024)
def _known_timezone(name: str) -> bool:
    # Bounded cache: a few hundred zones exist, and unknown names from a buggy producer
    # must not grow memory. The shape check ran first, so ``name`` is no file path.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


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
