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


CE_HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"ce-1"),
    ("ce_source", b"/shop/web"),
    ("ce_type", b"com.shop.web.add_to_cart"),
    ("ce_time", b"2027-01-15T08:00:00Z"),
]


def test_cloudevents_binary_mode_maps_headers_to_the_envelope() -> None:
    data = orjson.dumps({"customer_id": "c-1", "product_id": "p", "price": 2.0})
    ev = parse_event("web", data, b"c-1", CE_HEADERS, now_ms=NOW)
    assert isinstance(ev, Event)
    assert (ev.event_id, ev.type, ev.origin) == ("ce-1", "add_to_cart", "/shop/web")
    assert ev.time_ms == 1800000000000 and ev.dedup_key == "web//shop/web/ce-1"


def test_cloudevents_binary_mode_takes_the_customer_from_the_subject() -> None:
    headers = [*CE_HEADERS, ("ce_subject", b"c-1")]
    data = orjson.dumps({"product_id": "p", "price": 2.0})
    ev = parse_event("web", data, b"c-1", headers, now_ms=NOW)
    assert isinstance(ev, Event) and ev.customer_id == "c-1"


def test_cloudevents_structured_mode() -> None:
    ce = {
        "specversion": "1.0",
        "id": "ce-2",
        "source": "/support",
        "type": "ticket_opened",
        "time": "2027-01-15T08:00:00+00:00",
        "subject": "c-1",
        "data": {"ticket_id": "t-1", "priority": "high"},
    }
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    ev = parse_event("support", orjson.dumps(ce), b"c-1", headers, now_ms=NOW)
    assert isinstance(ev, Event)
    assert (ev.type, ev.customer_id, ev.data["ticket_id"]) == ("ticket_opened", "c-1", "t-1")


@pytest.mark.parametrize(
    ("headers", "value", "error_class"),
    [
        (CE_HEADERS[1:], b'{"customer_id": "c-1"}', "cloudevents_invalid"),
        ([("ce_specversion", b"0.3"), *CE_HEADERS[1:]], b"{}", "cloudevents_invalid"),
        ([("content-type", b"application/xml")], raw(type="login"), "unsupported_content_type"),
        (
            [("Content-Type", b"application/cloudevents+json")],
            orjson.dumps({"specversion": "1.0", "id": "x", "type": "login"}),
            "cloudevents_invalid",
        ),
        (
            [("content-type", b"application/cloudevents+json")],
            orjson.dumps(
                {"specversion": "1.0", "id": "x", "type": "login", "source": "/", "data": 3}
            ),
            "cloudevents_invalid",
        ),
    ],
)
def test_bad_envelopes_are_rejected(
    headers: list[tuple[str, bytes]], value: bytes, error_class: str
) -> None:
    assert rejected(parse_event("web", value, b"c-1", headers, now_ms=NOW)) == error_class


def test_json_content_type_is_accepted() -> None:
    headers = [("content-type", b"application/json; charset=utf-8")]
    assert isinstance(parse_event("web", raw(type="login"), b"c-1", headers, now_ms=NOW), Event)


def test_anonymous_web_event_is_keyed_by_its_anonymous_id() -> None:
    doc = {"event_id": "e", "anonymous_id": "a-9", "type": "page_view", "time": NOW}
    ev = parse_event("web", orjson.dumps(doc), b"a-9", now_ms=NOW)
    assert isinstance(ev, Event) and ev.customer_id is None and ev.anonymous_id == "a-9"
    assert rejected(parse_event("web", orjson.dumps(doc), b"c-1", now_ms=NOW)) == "key_mismatch"


def test_login_and_signup_carry_the_customers_attributes() -> None:
    for etype in ("login", "signup"):
        ev = parse("web", raw(type=etype, timezone="Asia/Tokyo", country="JP", tier="gold"))
        assert isinstance(ev, Event), ev
        assert (ev.data["timezone"], ev.data["country"], ev.data["tier"]) == (
            "Asia/Tokyo",
            "JP",
            "gold",
        )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("timezone", "Mars/Olympus", "field 'timezone' is not a time zone in the tz database"),
        ("timezone", "America", "field 'timezone' is not a time zone in the tz database"),
        ("timezone", "europe/berlin", "field 'timezone' must be an IANA time zone name"),
        ("timezone", "../../etc/passwd", "field 'timezone' must be an IANA time zone name"),
        ("timezone", "localtime", "field 'timezone' must be an IANA time zone name"),
        ("country", "de", "field 'country' must be an ISO 3166-1 alpha-2 code"),
        ("country", "D1", "field 'country' must be an ISO 3166-1 alpha-2 code"),
        ("country", "DEU", "field 'country' is longer than 2 characters"),
        ("tier", "x" * 33, "field 'tier' is longer than 32 characters"),
    ],
)
def test_an_unknown_timezone_or_malformed_country_is_rejected_with_the_reason(
    field: str, value: str, reason: str
) -> None:
    result = parse("web", raw(type="signup", **{field: value}))
    assert isinstance(result, Rejection) and result.error_class == "schema_invalid"
    assert result.message.startswith(reason), result.message
