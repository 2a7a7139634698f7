"""JSON Schema files exported from the event contracts, for publishers to validate against.

:func:`to_json_schema` turns one :class:`~topics.contracts.Contract` version into a draft
2020-12 schema of the plain JSON form of the event: the envelope plus the contract's
fields, saying what :func:`topics.events.parse_event` accepts, as the parser reads it:

- ``null`` counts as absent, so an optional field may be null and a required one not;
- a string must hold a character that is not white space (``str.strip`` is the judge);
- ``time`` is RFC 3339 with an offset and seconds (upper-case ``T`` and ``Z``), or
  non-negative epoch milliseconds.

What a schema cannot say, the parser alone checks: that ``5.0`` is not an integer (JSON
Schema counts it as one), an impossible date such as 30 February (unless the validator
asserts ``format``), a well-formed time zone name the tz database does not know
(``Mars/Olympus``), the record key, the size limit and event times in the future. The
other way round, the parser also reads ISO 8601 times that RFC 3339 does not allow (a
space for the ``T``, no seconds, ``20261124T080000Z``); the schema holds publishers to
RFC 3339. ``tests/unit/test_contracts.py`` pins each of these gaps down.

:func:`export_all` writes every version to :data:`SCHEMA_DIR`; :func:`check_exported`
tells when the files there have drifted from ``topics/contracts.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from topics.contracts import CHANNEL_NAMES, DECISION, ENVELOPE, FORMATS, HISTORY, Contract, Field

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""The committed schema files: ``<source>/<type>.v<N>.json``."""

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://segue.dev/schemas"

NOT_BLANK = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""Matches one character that ``str.isspace()`` rejects. Spelled out rather than ``\\S``
because ECMA-262 regexes (most validators) and Python disagree on what ``\\s`` covers."""

RFC3339 = (
    r"^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])(?!\n)$"
)
"""The RFC 3339 times ``datetime.fromisoformat`` reads: it refuses a lower-case ``z``, a
leap second and year 0. ``(?!\\n)`` because Python's ``$`` also matches before a final
newline. A validator that ignores ``format`` still checks this."""

_JSON_TYPE: Mapping[str, str | list[str]] = {
    "str": "string",
    "number": "number",
    "int": "integer",
    "bool": "boolean",
    "object": ["object", "array"],
}

_DECISION_SHAPES: Mapping[str, Mapping[str, Any]] = {
    "reasons": {"type": "array", "items": {"type": "string"}},
    "candidates": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["action", "channel", "eligible"],
            "properties": {
                "action": {"type": "string"},
                "channel": {"enum": list(CHANNEL_NAMES)},
                "eligible": {"type": "boolean"},
                "excluded_by": {"type": ["string", "null"]},
                "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "priority": {"type": ["number", "null"], "minimum": 0},
            },
        },
    },
    "features": {"type": "object", "additionalProperties": {"type": "number"}},
}
"""The decision's "object" fields as :class:`topics.decisions.Decision` writes them."""

_EXPORTED = re.compile(r"[^/]+\.v[0-9]+\.json")


def to_json_schema(contract: Contract) -> dict[str, Any]:
    """The JSON Schema of one contract version (the decision record has no envelope).

    >>> s = to_json_schema(HISTORY["support.csat_submitted"][0])
    >>> s["$id"]
    'https://segue.dev/schemas/support/csat_submitted/v1.json'
    >>> s["required"]
    ['event_id', 'customer_id', 'type', 'time', 'score']
    >>> s["properties"]["score"]
    {'type': 'integer', 'minimum': 1, 'maximum': 5}
    """
    is_event = contract.name != DECISION.name
    fields = _with_envelope(contract) if is_event else dict(contract.fields)
    shapes = {} if is_event else _DECISION_SHAPES
    properties = {name: _property(spec, shapes.get(name)) for name, spec in fields.items()}
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"{BASE_URI}/{contract.source}/{contract.type}/v{contract.version}.json",
        "title": f"{contract.name} v{contract.version}",
        "description": contract.doc,
        "type": "object",
        "properties": properties,
        "required": [name for name, spec in fields.items() if spec.required],
        # Upstream may add attributes; the parser ignores the ones it does not know.
        "additionalProperties": True,
    }
    if is_event:
        properties["type"] = {"const": contract.type, "description": ENVELOPE["type"].doc}
        properties["time"] = {
            "description": ENVELOPE["time"].doc,
            "oneOf": [
                {"type": "string", "format": "date-time", "pattern": RFC3339},
                {"type": "integer", "minimum": 0},
            ],
        }
        if contract.anonymous:
            schema["anyOf"] = [_present("customer_id"), _present("anonymous_id")]
    return schema


def export_all(
    directory: Path,
    *,
    history: Mapping[str, Sequence[Contract]] = HISTORY,
    decision: Contract = DECISION,
) -> list[Path]:
    """Write every contract version's schema under ``directory``; return the paths.

    Files are rewritten only when their bytes change. Stale ``<source>/<type>.v<N>.json``
    files are removed; nothing else in ``directory`` is touched.
    """
    expected = _expected(directory, history, decision)
    for path in _stale(directory, expected):
        path.unlink()
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
    for path, data in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
    return sorted(expected)


def check_exported(
    directory: Path,
    *,
    history: Mapping[str, Sequence[Contract]] = HISTORY,
    decision: Contract = DECISION,
) -> list[str]:
    """Drift between ``directory`` and the contracts, one line each; empty when in sync."""
    expected = _expected(directory, history, decision)
    problems: list[str] = []
    for path, data in sorted(expected.items()):
        rel = path.relative_to(directory)
        if not path.is_file():
            problems.append(f"{rel}: missing; run `segue contracts export`")
        elif path.read_bytes() != data:
            problems.append(
                f"{rel}: differs from topics/contracts.py; run `segue contracts export`"
            )
    for path in _stale(directory, expected):
        problems.append(f"{path.relative_to(directory)}: stale, no contract has this version")
    return problems


def _render(schema: Mapping[str, Any]) -> bytes:
    """Deterministic bytes: sorted keys, two-space indent, ASCII, a trailing newline."""
    return (json.dumps(schema, indent=2, sort_keys=True) + "\n").encode()


def _with_envelope(contract: Contract) -> dict[str, Field]:
    fields = {**ENVELOPE, **contract.fields}
    if not contract.anonymous:
        fields["customer_id"] = replace(ENVELOPE["customer_id"], required=True)
    return fields


def _property(spec: Field, shape: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(shape) if shape else {"type": _JSON_TYPE[spec.kind]}
    if spec.doc:
        out["description"] = spec.doc
    if spec.kind == "str":
        if spec.choices is not None:
            out["enum"] = list(spec.choices)
        elif spec.format is not None:
            out["pattern"] = FORMATS[spec.format]  # no white space, so never blank
        else:
            out["minLength"] = 1
            out["pattern"] = NOT_BLANK
        if spec.max_length is not None:
            out["maxLength"] = spec.max_length
    if spec.minimum is not None:
        out["minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if not spec.required:
        # The parser reads null as absent, so an optional field may be null.
        kinds = out["type"]
        out["type"] = [*([kinds] if isinstance(kinds, str) else kinds), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _present(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _expected(
    directory: Path, history: Mapping[str, Sequence[Contract]], decision: Contract
) -> dict[Path, bytes]:
    contracts = [*(c for versions in history.values() for c in versions), decision]
    return {
        directory / c.source / f"{c.type}.v{c.version}.json": _render(to_json_schema(c))
        for c in contracts
    }


def _stale(directory: Path, expected: Mapping[Path, bytes]) -> list[Path]:
    # Only files shaped like an export are ours to judge: a --dir typo must not delete.
    found = directory.glob("*/*.json") if directory.is_dir() else ()
    return sorted(p for p in found if _EXPORTED.fullmatch(p.name) and p not in expected)
