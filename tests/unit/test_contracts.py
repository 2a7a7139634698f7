"""The event contracts as JSON Schema: exported in sync, compatible across versions, and
agreeing with the parse step on which events are valid."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from topics.compat import breaking_changes, check_history
from topics.contracts import (
    CURRENT,
    DECISION,
    ENVELOPE,
    HISTORY,
    MAX_ID_LENGTH,
    Contract,
    Field,
)
from topics.decisions import Candidate, Decision
from topics.events import Event, parse_event
from topics.schema_export import NOT_BLANK, SCHEMA_DIR, check_exported, export_all, to_json_schema

NOW = 1_800_000_000_000
CONTRACTS = sorted(CURRENT.values(), key=lambda c: c.name)


# --- (a) the committed files are a fresh export ---------------------------------------


def test_committed_schemas_equal_a_fresh_export() -> None:
    assert check_exported(SCHEMA_DIR) == [], "run `segue contracts export` and commit"


def test_every_exported_file_is_a_valid_draft_2020_12_schema() -> None:
    files = sorted(SCHEMA_DIR.glob("*/*.json"))
    assert len(files) == sum(len(v) for v in HISTORY.values()) + 1
    for path in files:
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_an_edited_contract_that_was_not_exported_is_reported(tmp_path: Path) -> None:
    """Scenario: someone edits contracts.py and forgets to re-export.
    We expect check_exported to name each file that differs, is missing or is stale."""
    export_all(tmp_path)
    (tmp_path / "README.md").write_text("not ours\n")
    assert check_exported(tmp_path) == []

    search = HISTORY["web.search"][0]
    query = replace(search.fields["query"], max_length=1024)
    edited = replace(search, fields={**search.fields, "query": query})
    assert check_exported(tmp_path, history={**HISTORY, "web.search": (edited,)}) == [
        "web/search.v1.json: differs from topics/contracts.py; run `segue contracts export`"
    ]

    evolved = {**HISTORY, "web.search": (search, replace(edited, version=2))}
    (tmp_path / "web" / "teleport.v1.json").write_text("{}\n")
    assert check_exported(tmp_path, history=evolved) == [
        "web/search.v2.json: missing; run `segue contracts export`",
        "web/teleport.v1.json: stale, no contract has this version",
    ]

    export_all(tmp_path, history=evolved)
    assert check_exported(tmp_path, history=evolved) == []
    assert not (tmp_path / "web" / "teleport.v1.json").exists()
    assert (tmp_path / "README.md").read_text() == "not ours\n"


def test_export_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    paths = export_all(tmp_path / "a")
    again = export_all(tmp_path / "b")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    assert all(p.read_bytes().endswith(b"}\n") for p in paths)


# --- (b) and (c) compatible evolution -------------------------------------------------


def test_every_history_evolves_compatibly() -> None:
    assert check_history(HISTORY) == []


BASE = Contract(
    "shop",
    "thing",
    1,
    {
        "qty": Field("int", required=True),
        "price": Field("number", minimum=0.0, maximum=100.0),
        "tag": Field("str", choices=("a", "b"), max_length=10),
        "note": Field("str"),
    },
    anonymous=True,
)


def evolve(drop: str = "", **changed: Field) -> Contract:
    """BASE's version 2: without field ``drop``, with ``changed`` fields added or replaced."""
    fields = {name: spec for name, spec in BASE.fields.items() if name != drop}
    return replace(BASE, version=2, fields={**fields, **changed})


def edit(name: str, **changes: Any) -> Field:
    return replace(BASE.fields[name], **changes)


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        (evolve(sku=Field("str", required=True)), "new field 'sku' is required"),
        (evolve(note=edit("note", required=True)), "field 'note' becomes required"),
        (evolve(price=edit("price", kind="int")), "'price' changes kind from number to int"),
        (evolve(note=edit("note", kind="bool")), "'note' changes kind from str to bool"),
        (evolve(note=edit("note", choices=("x",))), "'note' gains choices"),
        (evolve(tag=edit("tag", choices=("a",))), "'tag' drops choices b"),
        (evolve(price=edit("price", minimum=1.0)), "'price' raises minimum from 0 to 1"),
        (evolve(qty=edit("qty", minimum=0)), "'qty' raises minimum from none to 0"),
        (evolve(price=edit("price", maximum=50.0)), "'price' lowers maximum from 100 to 50"),
        (evolve(qty=edit("qty", maximum=9)), "'qty' lowers maximum from none to 9"),
        (evolve(tag=edit("tag", max_length=5)), "'tag' lowers max_length from 10 to 5"),
        (evolve(note=edit("note", max_length=5)), "'note' lowers max_length from none to 5"),
        (evolve(note=edit("note", format="country")), "'note' gains format country"),
        (evolve(note=edit("note", format="timezone")), "where any text was accepted"),
        (evolve(drop="qty"), "required field 'qty' is removed"),
        (evolve(qty=edit("qty", required=False)), "field 'qty' is no longer required"),
        (replace(evolve(), anonymous=False), "no longer anonymous"),
    ],
)
def test_each_breaking_change_is_reported(new: Contract, problem: str) -> None:
    problems = breaking_changes(BASE, new)
    assert len(problems) == 1, problems
    assert problems[0].startswith("shop.thing v1 -> v2: ")
    assert problem in problems[0]


def test_becoming_anonymous_is_breaking() -> None:
    known = replace(BASE, anonymous=False)
    assert breaking_changes(known, replace(known, version=2, anonymous=True)) == [
        "shop.thing v1 -> v2: becomes anonymous; customer_id is no longer guaranteed"
    ]


@pytest.mark.parametrize(
    "new",
    [
        evolve(color=Field("str", max_length=20)),
        evolve(tag=edit("tag", max_length=50)),
        evolve(tag=edit("tag", max_length=None)),
        evolve(price=edit("price", minimum=-10.0)),
        evolve(price=edit("price", maximum=None)),
        evolve(drop="note"),
        evolve(qty=edit("qty", kind="number")),
        evolve(tag=edit("tag", choices=("a", "b", "c"))),
        evolve(tag=edit("tag", choices=None)),
        evolve(zone=Field("str", format="timezone")),
        evolve(
            drop="note",
            color=Field("str"),
            tag=edit("tag", max_length=50),
            price=edit("price", minimum=-10.0),
        ),
    ],
)
def test_compatible_evolutions_are_not_reported(new: Contract) -> None:
    assert breaking_changes(BASE, new) == []


def test_history_numbering_and_identity_are_checked() -> None:
    v3 = replace(BASE, version=3)
    renamed = replace(BASE, version=2, type="other")
    assert check_history({"shop.thing": (BASE, v3), "shop.gone": ()}) == [
        "shop.thing: version 3 is number 2 in the history; versions run 1, 2, 3... oldest first",
        "shop.gone: the history has no versions",
    ]
    assert check_history({"shop.thing": (BASE, renamed)}) == [
        "shop.thing: v2 is shop.other; source and type never change within a history"
    ]


# --- (d) the schemas and the parser agree ---------------------------------------------


@cache
def validator(name: str) -> Draft202012Validator:
    contract = DECISION if name == DECISION.name else CURRENT[name]
    # No format checker: most validators treat "format" as a note, so the schemas must
    # hold without it (and the result must not depend on what else is installed).
    return Draft202012Validator(to_json_schema(contract))


def verdicts(contract: Contract, doc: dict[str, Any]) -> tuple[bool, bool]:
    """(the parser accepts, the schema accepts) for one plain JSON event."""
    raw = orjson.dumps(doc)
    parsed = parse_event(contract.source, raw, None, now_ms=NOW)
    return isinstance(parsed, Event), validator(contract.name).is_valid(orjson.loads(raw))


EXAMPLES: dict[str | None, tuple[str, ...]] = {
    "country": ("DE", "US", "JP"),
    "timezone": ("Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5"),
}
"""Values of each format (and of none: a format-free field takes any text)."""


def valid_value(spec: Field) -> Any:
    if spec.choices:
        return spec.choices[-1]
    if spec.format:
        return EXAMPLES[spec.format][0]
    low = spec.minimum if spec.minimum is not None else 0
    return {"str": "x", "int": int(low), "number": low, "bool": True, "object": {}}[spec.kind]


def wrong_kind(spec: Field) -> Any:
    return {"str": 5, "int": 2.5, "number": "1", "bool": 1, "object": "x"}[spec.kind]


def minimal(contract: Contract) -> dict[str, Any]:
    required = {n: valid_value(s) for n, s in contract.fields.items() if s.required}
    return {"event_id": "e-1", "customer_id": "c-1", "type": contract.type, "time": NOW, **required}


def cases(contract: Contract) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, event, valid?) examples around one contract's minimal valid event."""
    base = minimal(contract)
    optional = {n: None for n, s in contract.fields.items() if not s.required}
    out: list[tuple[str, dict[str, Any], bool]] = [
        ("minimal", base, True),
        ("optional fields null", {**base, **optional}, True),
        ("RFC 3339 time", {**base, "time": "2026-11-24T08:00:00.250+01:00"}, True),
        ("unknown attribute", {**base, "campaign": [1, 2]}, True),
        ("no event_id", {k: v for k, v in base.items() if k != "event_id"}, False),
        ("blank event_id", {**base, "event_id": " \t\u3000"}, False),
        ("long customer_id", {**base, "customer_id": "c" * (MAX_ID_LENGTH + 1)}, False),
        ("time is a boolean", {**base, "time": True}, False),
        ("negative time", {**base, "time": -1}, False),
        ("time without offset", {**base, "time": "2026-11-24T08:00:00"}, False),
        ("time with lower-case z", {**base, "time": "2026-11-24T08:00:00z"}, False),
    ]
    no_customer = {k: v for k, v in base.items() if k != "customer_id"}
    if contract.anonymous:
        out.append(("anonymous", {**no_customer, "anonymous_id": "a-1"}, True))
        out.append(("null customer", {**base, "customer_id": None, "anonymous_id": "a"}, True))
        out.append(("nobody", {**no_customer, "anonymous_id": None}, False))
    else:
        out.append(("no customer_id", no_customer, False))
    for name, spec in contract.fields.items():
        if spec.required:
            out.append((f"no {name}", {k: v for k, v in base.items() if k != name}, False))
            out.append((f"null {name}", {**base, name: None}, False))
        out.append((f"{name} of the wrong kind", {**base, name: wrong_kind(spec)}, False))
        if spec.kind == "str":
            out.append((f"blank {name}", {**base, name: "  "}, False))
            out.append((f"empty {name}", {**base, name: ""}, False))
        if spec.choices:
            out.append((f"{name} not a choice", {**base, name: "nope"}, False))
        if spec.format:
            out.append((f"{name} in lower case", {**base, name: valid_value(spec).lower()}, False))
            out.append((f"{name} with a newline", {**base, name: valid_value(spec) + "\n"}, False))
        if spec.max_length:
            longest = "x" * spec.max_length
            valid = spec.choices is None and spec.format is None
            out.append((f"{name} at max_length", {**base, name: longest}, valid))
            out.append((f"{name} too long", {**base, name: longest + "x"}, False))
        if spec.minimum is not None:
            out.append((f"{name} below minimum", {**base, name: spec.minimum - 1}, False))
        if spec.maximum is not None:
            out.append((f"{name} at maximum", {**base, name: spec.maximum}, True))
            out.append((f"{name} above maximum", {**base, name: spec.maximum + 1}, False))
    return out


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_parser_and_schema_agree_on_examples(contract: Contract) -> None:
    wrong = []
    for what, doc, valid in cases(contract):
        parser, schema = verdicts(contract, doc)
        if parser != valid or schema != valid:
            wrong.append(f"{what}: expected {valid}, parser {parser}, schema {schema}")
    assert wrong == []


def test_a_time_zone_the_database_lacks_is_only_the_parsers_to_reject() -> None:
    """A gap as topics.schema_export's docstring lists it: the shape is right, the name
    unknown."""
    contract = CURRENT["web.login"]
    doc = {**minimal(contract), "timezone": "Mars/Olympus"}
    assert verdicts(contract, doc) == (False, True)


@pytest.mark.parametrize(
    ("what", "change", "parser"),
    [
        ("an integer written with a fraction", {"score": 5.0}, False),
        ("an epoch written with a fraction", {"time": float(NOW)}, False),
        ("an impossible date", {"time": "2026-02-30T08:00:00Z"}, False),
        ("a space for the T", {"time": "2026-11-24 08:00:00Z"}, True),
        ("ISO 8601 basic format", {"time": "20261124T080000Z"}, True),
        ("no seconds", {"time": "2026-11-24T08:00Z"}, True),
    ],
)
def test_known_gaps_between_parser_and_schema(
    what: str, change: dict[str, Any], parser: bool
) -> None:
    """What JSON Schema cannot say (the first three) or only the parser accepts (the rest),
    as topics.schema_export's docstring lists them. When this fails, update that list."""
    contract = CURRENT["support.csat_submitted"]
    assert verdicts(contract, {**minimal(contract), **change}) == (parser, not parser), what


def test_not_blank_is_exactly_the_parsers_notion_of_blank() -> None:
    pattern = re.compile(NOT_BLANK)
    mismatched = [
        hex(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() != (not pattern.match(chr(c)))
    ]
    assert mismatched == []


def test_decisions_segue_writes_match_the_decision_schema() -> None:
    acted = Decision(
        "d-1", "c-1", "e-1", "web", "search", NOW, "offer", "email", "marketing", 0.4, False,
        ("eligible 1 of 2", "highest priority"), "logistic/3",
        (Candidate("offer", "email", True, None, 0.4), Candidate("call", "agent", False, "x")),
        {"bias": 1.0, "cart_items": 2.0}, NOW,
    )  # fmt: skip
    quiet = replace(acted, action="none", channel=None, action_class=None, score=None)
    check = validator(DECISION.name)
    assert check.is_valid(acted.to_dict()) and check.is_valid(quiet.to_dict())
    assert not check.is_valid({**acted.to_dict(), "reasons": "because"})
    assert not check.is_valid({**acted.to_dict(), "features": {"bias": "high"}})


# Property: on near-valid events of every contract, the parser's verdict is the schema's.
# Left out on purpose, as the module docstring of topics.schema_export says: integral floats
# for integers, ISO 8601 times outside RFC 3339, which only the parser accepts, and
# well-formed time zone names the tz database lacks, which only the parser rejects (the
# junk below starts with no capital letter, so it is never well-formed).

OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ODD_TEXT = st.text(alphabet=st.sampled_from(" \t\n\x1c\x85\u3000\ufeffa-é"), max_size=4)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    ODD_TEXT,
    st.lists(INT64, max_size=2),
    st.dictionaries(st.text(max_size=3), INT64, max_size=2),
)
TIMES = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(2026, 12, 31),
    timezones=st.sampled_from(OFFSETS),
)


def good(spec: Field) -> st.SearchStrategy[Any]:
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.format:
        return st.sampled_from(EXAMPLES[spec.format])
    if spec.kind == "str":
        top = spec.max_length or 40
        return st.one_of(
            st.text(min_size=1, max_size=min(top, 20)).filter(str.strip),
            st.just("y" * top),
        )
    if spec.kind == "int":
        low = int(spec.minimum) if spec.minimum is not None else -(2**63)
        high = int(spec.maximum) if spec.maximum is not None else 2**63 - 1
        return st.integers(min_value=low, max_value=high)
    if spec.kind == "number":
        return st.floats(spec.minimum, spec.maximum, allow_nan=False, allow_infinity=False)
    if spec.kind == "bool":
        return st.booleans()
    return st.one_of(st.lists(INT64, max_size=2), st.dictionaries(st.text(), st.none()))


def bad(spec: Field) -> st.SearchStrategy[Any]:
    near: list[Any] = ["nope", "", " "]
    if spec.max_length:
        near.append("z" * (spec.max_length + 1))
    if spec.minimum is not None:
        near += [spec.minimum - 1, spec.minimum - 0.5]
    if spec.maximum is not None:
        near += [spec.maximum + 1, spec.maximum + 0.5]
    return st.one_of(st.sampled_from(near), JUNK)


good_times = st.one_of(
    st.integers(min_value=0, max_value=NOW),
    TIMES.map(lambda t: t.isoformat()),
    TIMES.map(lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "Z")),
)
bad_times = st.one_of(
    st.integers(min_value=-(2**63), max_value=-1),
    TIMES.map(lambda t: t.replace(tzinfo=None).isoformat()),
    TIMES.map(lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "z")),
    JUNK.filter(lambda v: not isinstance(v, int) or isinstance(v, bool) or v < 0),
)


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[Contract, dict[str, Any]]:
    contract = draw(st.sampled_from(CONTRACTS))
    fields = {**ENVELOPE, **contract.fields}
    del fields["type"], fields["time"]
    broken = draw(st.sets(st.sampled_from(sorted(fields)), max_size=2))
    doc: dict[str, Any] = {"type": contract.type}
    doc["time"] = draw(bad_times if draw(st.integers(0, 5)) == 0 else good_times)
    for name, spec in fields.items():
        if name in broken:
            choice = draw(st.sampled_from(["absent", "bad", "junk"]))
            if choice != "absent":
                doc[name] = draw(bad(spec) if choice == "bad" else JUNK)
        elif spec.required or name == "customer_id" or draw(st.booleans()):
            doc[name] = draw(good(spec))
    return contract, doc


@settings(max_examples=1_000, deadline=None)
@given(case=near_valid())
def test_parser_and_schema_agree_on_near_valid_events(
    case: tuple[Contract, dict[str, Any]],
) -> None:
    contract, doc = case
    parser, schema = verdicts(contract, doc)
    assert parser == schema, parse_event(contract.source, orjson.dumps(doc), None, now_ms=NOW)
