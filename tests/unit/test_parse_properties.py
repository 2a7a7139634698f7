"""Property: whatever bytes and headers arrive, the parse step answers, never raises.

Generated inputs mix raw noise with near-valid events (right shape, wrong details) so
both the JSON layer and the contract layer are exercised.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from topics.contracts import CURRENT, Field
from topics.events import _PLANS, Event, Rejection, _checked, _well_formed, parse_event

NOW = 1_800_000_000_000
SOURCES = sorted({c.source for c in CURRENT.values()})
TYPES = sorted({c.type for c in CURRENT.values()})

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "event_id",
        "customer_id",
        "anonymous_id",
        "type",
        "time",
        "product_id",
        "price",
        "ticket_id",
        "score",
        "amount",
        "order_id",
        "decision_id",
        "channel",
        "query",
        "device",
    ]
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {
        "event_id": draw(st.one_of(st.text(max_size=140), json_scalars)),
        "customer_id": draw(st.one_of(st.just("c-1"), st.text(max_size=140), json_scalars)),
        "type": draw(st.one_of(st.sampled_from(TYPES), st.text(max_size=12))),
        "time": draw(
            st.one_of(
                st.integers(min_value=-1, max_value=NOW + 10**9),
                st.just("2027-01-15T08:00:00Z"),
                st.text(max_size=30),
                json_scalars,
            )
        ),
    }
    doc.update(draw(st.dictionaries(field_names, json_values, max_size=5)))
    return orjson.dumps(doc)


def _valid_value(spec: Field) -> st.SearchStrategy[Any]:
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.kind == "str":
        return st.text(min_size=1, max_size=min(spec.max_length or 30, 30)).filter(str.strip)
    lo = spec.minimum if spec.minimum is not None else -1e6
    hi = spec.maximum if spec.maximum is not None else 1e6
    if spec.kind == "int":
        return st.integers(min_value=int(lo), max_value=int(hi))
    return st.floats(min_value=lo, max_value=hi, allow_nan=False)


@st.composite
def valid_or_mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event of a random contract, then maybe one field broken or dropped."""
    contract = draw(st.sampled_from(sorted(CURRENT.values(), key=lambda c: c.name)))
    doc: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "customer_id": "c-1",
        "type": contract.type,
        "time": draw(st.sampled_from([NOW, "2027-01-15T08:00:00Z"])),
    }
    for name, spec in contract.fields.items():
        if spec.required or draw(st.booleans()):
            doc[name] = draw(_valid_value(spec))
    if draw(st.booleans()):
        victim = draw(st.sampled_from(sorted(doc)))
        if draw(st.booleans()):
            del doc[victim]
        else:
            doc[victim] = draw(json_values)
    return contract.source, orjson.dumps(doc)


values = st.one_of(st.none(), st.binary(max_size=200), near_valid())
headers = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "ce_id",
                "ce_type",
                "ce_source",
                "ce_specversion",
                "ce_time",
                "ce_subject",
                "content-type",
                "x-other",
            ]
        ),
        st.one_of(
            st.binary(max_size=30),
            st.sampled_from([b"1.0", b"application/json", b"application/cloudevents+json"]),
        ),
    ),
    max_size=5,
)


inputs = st.one_of(
    st.tuples(st.sampled_from(SOURCES), values),
    valid_or_mutated(),
)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=inputs,
    key=st.one_of(st.none(), st.just(b"c-1"), st.binary(max_size=10)),
    hdrs=st.one_of(st.just([]), headers),
)
def test_every_input_is_accepted_or_rejected_with_a_reason(
    case: tuple[str, bytes | None], key: bytes | None, hdrs: list[tuple[str, bytes]]
) -> None:
    source, value = case
    result = parse_event(source, value, key, hdrs, now_ms=NOW)
    event(type(result).__name__ if isinstance(result, Event) else result.error_class)
    if isinstance(result, Rejection):
        assert result.error_class and result.message
    else:
        assert isinstance(result, Event)
        assert result.event_id and (result.customer_id or result.anonymous_id)
        assert result.time_ms <= NOW + 300_000


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_or_mutated())
def test_the_one_pass_check_accepts_exactly_what_the_field_by_field_check_accepts(
    case: tuple[str, bytes],
) -> None:
    """Scenario: a well-formed event is checked in one pass (``_well_formed``), anything
    else field by field (``_checked``), which names each problem. We expect the one pass
    to accept only what the field by field check accepts, and every such event with an
    epoch-millisecond time, so that no event's fate depends on which check ran."""
    source, value = case
    doc = orjson.loads(value)
    etype = doc.get("type")
    # A type that is not one of the source's is rejected before either check.
    assume(isinstance(etype, str) and (source, etype) in _PLANS)
    plan = _PLANS[source, etype]
    anonymous_id = doc.get("anonymous_id") if plan.anonymous else None
    time_ms = doc.get("time")
    one_pass = (
        type(time_ms) is int
        and time_ms >= 0
        and (doc.get("customer_id") is not None or anonymous_id is not None)
        and _well_formed(doc, plan)
    )
    by_field = not isinstance(_checked(doc, plan.contract, anonymous_id), Rejection)
    event("accepted" if by_field else "rejected")
    if type(time_ms) is int:
        assert one_pass == by_field
    else:
        assert not one_pass
