"""Where each customer is in each journey: the data the journey engine keeps per customer.

Plain frozen dataclasses over plain dicts, kept inside the profile (engine/profile.py), so
one table write stores a customer's profile and journey positions together. The logic
that moves them is engine/journey_runtime.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Membership:
    """One customer's place in one journey."""

    journey_id: str
    step_id: str
    entered_ms: int
    step_since_ms: int
    """When the membership reached ``step_id``: part of the act id."""
    vars: Mapping[str, Any]
    """The journey variables captured at entry (``journey.x`` in conditions)."""
    wake_at_ms: int | None
    """When the wait or wait_for at ``step_id`` expires; None when nothing is due."""
    held: bool
    """Reached an act, or had its timer expire, while paused for an open ticket."""
    entry: int = 0
    """Which entry into the journey this is (1, 2, ...): part of the act id, so two
    entries in the same millisecond still take acts with distinct ids."""


@dataclass(frozen=True, slots=True)
class JourneyMemory:
    """Everything about journeys kept in the customer's state. Plain dicts (never
    mutated: each call builds new ones) so that the memory pickles."""

    active: Mapping[str, Membership] = field(default_factory=dict)
    last_exit_ms: Mapping[str, int] = field(default_factory=dict)
    entries: Mapping[str, int] = field(default_factory=dict)
    """How many times each journey was entered, for the ``never`` policy."""


def membership_to_list(m: Membership) -> list[Any]:
    """The stored form inside a profile: the fields after ``journey_id`` (the key it is
    stored under), in order, without their names: about half the bytes of an object."""
    return [m.step_id, m.entered_ms, m.step_since_ms, m.vars, m.wake_at_ms, m.held, m.entry]


def memory_from_doc(doc: Mapping[str, Any] | None) -> JourneyMemory:
    """The memory from its JSON form: memberships as ``membership_to_list`` wrote them,
    or as objects (orjson's own form of the dataclass)."""
    if not doc:
        return JourneyMemory()
    active = {
        jid: Membership(jid, *m) if isinstance(m, list) else Membership(**m)
        for jid, m in doc.get("active", {}).items()
    }
    return JourneyMemory(active, dict(doc.get("last_exit_ms", {})), dict(doc.get("entries", {})))
