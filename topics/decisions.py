"""What Segue writes: one decision per decision point, explained.

A decision with an action goes to ``<prefix>decisions.<channel>``; every decision,
including "no action", goes to ``<prefix>decisions.log``. Both carry the same JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

NO_ACTION = "none"


def decision_id(customer_id: str, source: str, event_id: str, step: str) -> str:
    """A decision id derived only from what triggered the decision.

    A replayed event yields the same id whatever the model now prefers, so channel
    services can drop duplicates by id.

    >>> decision_id("c1", "web", "e1", "nba")
    'd-9bab26f17ea56c5a23c7c82cc3fcc34c'
    """
    # An f-string, not a join of a tuple, and the hash bound once: 6,946 instructions
    # where the join took 7,013 (callgrind), little but not nothing.
    text = f"{customer_id}\x1f{source}\x1f{event_id}\x1f{step}"
    return "d-" + _blake2b(text.encode(), digest_size=16).hexdigest()


_blake2b = hashlib.blake2b


@dataclass(frozen=True)
class Candidate:
    """One (action, channel) pair considered, and what happened to it.

    No ``__slots__``, like ``Decision``: orjson serialises a dataclass from its
    ``__dict__`` when it has one, and from a slotted one field by field, after a failed
    ``__dict__`` lookup that raises and clears an ``AttributeError`` per object. A
    decision and its eight or so candidates cost four times as much to encode slotted,
    a fifth of the decide step (``benchmarks.core_throughput --workload decide``)."""

    action: str
    channel: str
    eligible: bool
    excluded_by: str | None = None
    score: float | None = None
    """The model's propensity of a conversion; None when excluded."""
    priority: float | None = None
    """What arbitration ranks by: score x business value x the action's weight lever."""


@dataclass(frozen=True)
class Decision:
    """One decision, as the decision topics carry it (``encode``). No ``__slots__``: see
    ``Candidate``."""

    decision_id: str
    customer_id: str
    event_id: str
    event_source: str
    event_type: str
    event_time_ms: int
    action: str
    channel: str | None
    action_class: str | None
    score: float | None
    explored: bool
    reasons: tuple[str, ...]
    model_version: str
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    features: dict[str, float] = field(default_factory=dict)
    """What the model saw: the outcome of this decision teaches it from these."""
    decided_at_ms: int = 0
    journey: str | None = None
    """The journey whose step took this action; None for next-best-action decisions."""
    catalogue_version: str | None = None
    """The journey catalogue in force, as ``name@version``."""
    stage: str | None = None
    """The customer's lifecycle stage at decision time, by the catalogue's rules."""
    propensity: float | None = None
    """The probability with which the deciding policy took this action (``none``
    included) among the eligible candidates, exploration included: what off-policy
    evaluation weighs the logged outcome by. 1.0 for a choice no draw could change (a
    rule, a journey step, the holdout); None for a decision re-sent without it."""
    holdout: bool = False
    """The customer is in the holdout group: no marketing action is ever taken for them."""

    @property
    def acts(self) -> bool:
        return self.action != NO_ACTION

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.encode())
        return result

    def encode(self) -> bytes:
        # orjson serialises dataclasses natively, ten times faster than dataclasses.asdict.
        candidates = self.candidates
        kept = _KEPT.get(id(candidates))
        if kept is not None and kept[0] is candidates:
            # The candidates' JSON as ``kept_encoded`` wrote it, in the candidates' place
            # (a dict keeps a replaced key where it was): the same bytes.
            return orjson.dumps({**self.__dict__, "candidates": kept[1]})
        return orjson.dumps(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Decision:
        cands = tuple(Candidate(**c) for c in doc.get("candidates", ()))
        return cls(**{**doc, "candidates": cands, "reasons": tuple(doc["reasons"])})


_KEPT: dict[int, tuple[tuple[Candidate, ...], orjson.Fragment]] = {}
"""``kept_encoded``'s tuples by id, each with its JSON. The entry holds the tuple, so no
other object takes its id while it is here."""
_MOST_KEPT = 4096


def kept_encoded(candidates: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
    """``candidates``, their JSON written once for every decision that carries this very
    tuple (``Decision.encode``): a decision that excludes every candidate shares the tuple
    of its combination of reasons with many others (``engine.decide``). Writing eight
    candidates was two fifths of a decision's encoding: 23,600 instructions a decision
    where writing each whole took 29,400, over decisions of which half acted (callgrind;
    an acting decision is still written whole). Up to a bound; past it, every tuple is
    forgotten and its decisions are encoded whole again (the same bytes).

    >>> c = kept_encoded((Candidate("a", "sms", False, "no_consent"),))
    >>> d = Decision("d-1", "c1", "e1", "web", "search", 0, NO_ACTION, None, None, None,
    ...              False, ("r",), "m/0", candidates=c)
    >>> d.encode() == orjson.dumps(d)
    True
    """
    if len(_KEPT) >= _MOST_KEPT:
        _KEPT.clear()
    _KEPT[id(candidates)] = (candidates, orjson.Fragment(orjson.dumps(candidates)))
    return candidates


def is_kept(candidates: tuple[Candidate, ...]) -> bool:
    """Whether ``candidates`` is a tuple ``kept_encoded`` keeps: one shared by many
    decisions, worth remembering more about.

    >>> is_kept(kept_encoded((Candidate("a", "sms", False, "no_consent"),)))
    True
    >>> is_kept((Candidate("a", "sms", False, "no_consent"),))
    False
    """
    kept = _KEPT.get(id(candidates))
    return kept is not None and kept[0] is candidates
