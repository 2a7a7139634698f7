"""Whether a new version of an event contract is a compatible evolution of the old one.

Two promises must survive every new version, because topics keep old events (replays
read them with the new contract) and consumers keep running while producers upgrade:

1. Every event the old version accepted, the new one accepts. So no new required
   field, no optional field made required, no narrower type (``number`` -> ``int``, or
   any other change of kind; ``int`` -> ``number`` widens), no ``choices`` where there
   were none and no dropped choice, no higher ``minimum``, no lower ``maximum`` or
   ``max_length``, no new or changed ``format``, and an ``anonymous`` contract stays
   anonymous.
2. Every field a consumer of the old version could count on is still there. So a
   required field is never removed nor made optional, and a contract that is not
   ``anonymous`` never becomes so (that would make ``customer_id`` optional). Why:
   consumers index required fields without a None check, and an event that "may" carry
   one breaks them exactly as one that lacks it.

An optional field may be removed: consumers already handle its absence, and the parser
ignores a field it no longer knows. To retire a required field, add a new event type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

from topics.contracts import Contract, Field


def breaking_changes(old: Contract, new: Contract) -> list[str]:
    """What makes ``new`` an incompatible successor of ``old``; empty when compatible.

    >>> v1 = Contract("support", "csat_submitted", 1, {"score": Field("int", maximum=5)})
    >>> v2 = Contract("support", "csat_submitted", 2, {"score": Field("int", maximum=3)})
    >>> breaking_changes(v1, v2)
    ["support.csat_submitted v1 -> v2: field 'score' lowers maximum from 5 to 3"]
    """
    where = f"{new.name} v{old.version} -> v{new.version}"
    problems: list[str] = []
    if old.anonymous and not new.anonymous:
        problems.append(f"{where}: no longer anonymous; events with only anonymous_id fail")
    if new.anonymous and not old.anonymous:
        problems.append(f"{where}: becomes anonymous; customer_id is no longer guaranteed")
    for name, was in old.fields.items():
        now = new.fields.get(name)
        if now is None:
            if was.required:
                problems.append(f"{where}: required field {name!r} is removed")
            continue
        problems += [f"{where}: field {name!r} {why}" for why in _narrowed(was, now)]
    for name, now in new.fields.items():
        if name not in old.fields and now.required:
            problems.append(f"{where}: new field {name!r} is required")
    return problems


def check_history(history: Mapping[str, Sequence[Contract]]) -> list[str]:
    """Every problem in every event type's history: numbering, identity, compatibility."""
    problems: list[str] = []
    for name, versions in history.items():
        if not versions:
            problems.append(f"{name}: the history has no versions")
            continue
        for position, contract in enumerate(versions, start=1):
            if contract.version != position:
                problems.append(
                    f"{name}: version {contract.version} is number {position} in the "
                    "history; versions run 1, 2, 3... oldest first"
                )
            if contract.name != name:
                problems.append(
                    f"{name}: v{contract.version} is {contract.name}; source and type "
                    "never change within a history"
                )
        for old, new in pairwise(versions):
            problems += breaking_changes(old, new)
    return problems


def _narrowed(was: Field, now: Field) -> list[str]:
    out: list[str] = []
    if was.kind != now.kind and (was.kind, now.kind) != ("int", "number"):
        out.append(f"changes kind from {was.kind} to {now.kind}")
    if now.required and not was.required:
        out.append("becomes required")
    if was.required and not now.required:
        out.append("is no longer required")
    if now.choices is not None:
        if was.choices is None:
            out.append("gains choices where any value was accepted")
        elif dropped := [c for c in was.choices if c not in now.choices]:
            out.append(f"drops choices {', '.join(dropped)}")
    if now.minimum is not None and (was.minimum is None or now.minimum > was.minimum):
        out.append(f"raises minimum from {_bound(was.minimum)} to {now.minimum:g}")
    if now.maximum is not None and (was.maximum is None or now.maximum < was.maximum):
        out.append(f"lowers maximum from {_bound(was.maximum)} to {now.maximum:g}")
    if now.max_length is not None and (was.max_length is None or now.max_length < was.max_length):
        out.append(f"lowers max_length from {_bound(was.max_length)} to {now.max_length}")
    if now.format is not None and now.format != was.format:
        out.append(f"gains format {now.format} where {was.format or 'any text'} was accepted")
    return out


def _bound(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"
