"""The parse step: every bad input is rejected with a reason, never raised."""

from __future__ import annotations

import orjson
import pytest

from topics.events import Event, Rejection, parse_event

NOW = 1_800_000_000_000


def raw(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e-1", "customer_id": "c-1", "time": NOW}
    return orjson.dumps({**base, **fields})


def parse(source: str, value: bytes | None, key: bytes | None = b"c-1") -> Event | Rejection:
    return parse_event(source, value, key, now_ms=NOW)


def rejected(result: Event | Rejection) -> str:
    assert isinstance(result, Rejection), result
    return result.error_class


def test_valid_events_of_each_source_are_accepted() -> None:
    cases = [
        ("web", raw(type="add_to_cart", product_id="p", price=3.5, device="mobile")),
        ("support", raw(type="ticket_opened", ticket_id="t-1", priority="high")),
        ("purchase", raw(type="order_placed", order_id="o-1", amount=20)),
        ("outcome", raw(type="converted", decision_id="d-1")),
        ("consent", raw(type="opt_out", channel="sms")),
    ]
    for source, value in cases:
        ev = parse(source, value)
        assert isinstance(ev, Event), (source, ev)
        assert ev.customer_id == "c-1" and ev.source == source and ev.time_ms == NOW


def test_rfc3339_time_with_offset_is_epoch_milliseconds() -> None:
    ev = parse("web", raw(type="login", time="2026-11-24T08:00:00.250+01:00"))
    assert isinstance(ev, Event)
    assert ev.time_ms == 1795503600250


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b'{"event_id": "e-1", "custom', "malformed_json"),
        (b"\xff\xfe not utf-8", "bad_encoding"),
        (b"[1, 2, 3]", "not_an_object"),
        (None, "tombstone"),
        (b"x" * 1_048_577, "too_large"),
        (raw(type="teleport"), "unknown_event_type"),
        (raw(), "schema_invalid"),
        (raw(type="add_to_cart", product_id="p", price="free"), "schema_invalid"),
        (raw(type="add_to_cart", product_id="p", price=-1), "schema_invalid"),
        (raw(type="add_to_cart", product_id="p", price=None), "schema_invalid"),
        (raw(type="login", customer_id=""), "schema_invalid"),
        (raw(type="login", customer_id="c" * 129), "schema_invalid"),
        (raw(type="login", event_id=None), "schema_invalid"),
        (raw(type="login", customer_id=42), "schema_invalid"),
        (raw(type="login", time="yesterday"), "schema_invalid"),
        (raw(type="login", time="2026-11-24T08:00:00"), "schema_invalid"),
        (raw(type="login", time=True), "schema_invalid"),
        (raw(type="login", time=NOW + 3_600_000), "time_in_future"),
    ],
)
def test_bad_input_is_rejected_with_its_class(value: bytes | None, error_class: str) -> None:
    assert rejected(parse("web", value)) == error_class


def test_csat_score_range_is_enforced() -> None:
    assert isinstance(parse("support", raw(type="csat_submitted", score=5)), Event)
    assert rejected(parse("support", raw(type="csat_submitted", score=6))) == "schema_invalid"
    assert rejected(parse("support", raw(type="csat_submitted", score=4.5))) == "schema_invalid"


def test_key_must_match_customer_id() -> None:
    assert rejected(parse("web", raw(type="login"), key=b"someone-else")) == "key_mismatch"
    assert isinstance(parse("web", raw(type="login"), key=None), Event)


def test_rejection_messages_name_the_field() -> None:
    result = parse("web", raw(type="add_to_cart", product_id="p"))
    assert isinstance(result, Rejection)
    assert "'price' is required" in result.message
