"""Journeys as data: a YAML catalogue, parsed into frozen dataclasses and checked whole.

A catalogue is written by people and read by every worker, so it is validated before a
worker ever sees it: ``load_catalogue`` (engine/journey_loader.py) reports *every*
problem it finds, each with the file, line and column of the offending text, and returns
a ``Catalogue`` only when there are none. Conditions use the safe language of
``engine.expr``; nothing is ``eval``-ed, and YAML is read with PyYAML's safe composer
only. This module holds the model the loader builds, the lifecycle stages and the
digest's canonical form.

The format::

    catalogue: default        # name
    version: 1                # positive integer; a publish must increase it
    journeys:
      - id: cart_recovery
        class: marketing      # marketing | service | transactional
        priority: 50          # integer 0..1000, higher wins when journeys compete for a slot
        pause_on_open_ticket: true     # optional; default true for marketing, false otherwise
        reentry: {policy: after, cooldown: 7d}   # never | always | after (needs cooldown)
                                                 # | if_not_active (the default)
        entry:
          event: web.add_to_cart
          when: "event.price >= 10"            # optional condition
        capture:                                # optional: journey variables taken at entry
          product_id: "event.product_id"
        exit:                                   # optional; checked on EVERY event in the journey
          - event: purchase.order_placed        # an event type, a condition, or both
          - when: "len(profile.open_tickets) > 0"
        steps:
          - id: wait_for_order
            wait_for:
              event: purchase.order_placed
              match: "event.order_id != null"   # optional; roots event, profile, journey, now
              timeout: 1h
              on_event: done                     # step id
              on_timeout: remind                 # step id
          - id: remind
            act: {action: cart_reminder, channels: [email, push]}   # next: the following step
          - id: pause
            wait: 30m
          - id: check
            branch:
              - when: "profile.orders > 0"
                goto: done
            else: remind_again                  # optional; default the following step
          - id: remind_again
            act: {action: discount_offer, channels: [email]}
            next: done
          - id: done
            exit: true
    lifecycle:                 # optional: stages derived from behaviour, first match wins
      - stage: advocacy
        when: "profile.orders >= 5"
      - stage: awareness
        when: "true"
    actions: [...]             # optional: the action catalogue (engine/actions.py)
    levers: {...}              # optional: priority weights (engine/actions.py)
    contact_policy: {...}      # optional: caps, gap, quiet hours (engine/contact_config.py)

Decisions the format makes:

- A step without an explicit link goes to the following step (``next`` of act and
  wait, ``else`` of branch, ``on_event`` and ``on_timeout`` of wait_for). The loader
  resolves these, so a step's link is a step id or None.
- None means the journey ends: falling off the end is an exit, exactly like an
  ``exit: true`` step. An ``exit`` step is only needed to end from the middle.
- Condition roots: ``event``, ``profile`` and ``now`` at entry and in ``capture``;
  ``journey`` (the captured variables) too in ``exit``, ``wait_for.match`` and
  ``branch``; only ``profile`` and ``now`` in ``lifecycle``. ``now`` is epoch ms.
- Durations are a whole number and a unit (ms, s, m, h, d), held in milliseconds.
- An act names an action of the catalogue's ``actions`` and only channels that action
  lists; an action that names its ``journeys`` may be taken by those journeys only.
- Ids (catalogue, journeys, steps, captured variables) are lower-case words such as
  ``cart_recovery``: they name metrics, logs and timers, so they must stay stable.
- ``version`` only names the content; that a publish increases it is for the publisher
  to enforce. ``Catalogue.digest`` tells two contents apart whatever their version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import time
from typing import Any, Literal

from engine.actions import Action, Levers
from engine.contact_policy import DEFAULT_POLICY, ContactPolicy
from engine.expr import Expr

JourneyClass = Literal["marketing", "service", "transactional"]
ReentryPolicy = Literal["never", "always", "after", "if_not_active"]
JOURNEY_CLASSES: tuple[JourneyClass, ...] = ("marketing", "service", "transactional")
REENTRY_POLICIES: tuple[ReentryPolicy, ...] = ("never", "always", "after", "if_not_active")
MAX_PRIORITY = 1000

ENTRY_ROOTS = frozenset({"event", "profile", "now"})
"""Names an entry condition or a capture expression may read."""
JOURNEY_ROOTS = ENTRY_ROOTS | {"journey"}
"""Names exit rules, wait_for matches and branch conditions may read."""
LIFECYCLE_ROOTS = frozenset({"profile", "now"})


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class CatalogueError(ValueError):
    """A catalogue that must not be published, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    def __reduce__(self) -> tuple[type[CatalogueError], tuple[list[Problem]]]:
        return (CatalogueError, (self.problems,))


@dataclass(frozen=True, slots=True)
class Entry:
    event: str
    when: Expr | None = None


@dataclass(frozen=True, slots=True)
class Exit:
    """Leave the journey on an event of this type, when the condition holds, or both."""

    event: str | None = None
    when: Expr | None = None


@dataclass(frozen=True, slots=True)
class Reentry:
    policy: ReentryPolicy = "if_not_active"
    cooldown_ms: int | None = None
    """Only with ``after``: how long after the last exit the journey may start again."""


@dataclass(frozen=True, slots=True)
class Act:
    id: str
    action: str
    channels: tuple[str, ...]
    next: str | None


@dataclass(frozen=True, slots=True)
class Wait:
    id: str
    duration_ms: int
    next: str | None


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait for an event (that ``match`` accepts) up to ``timeout_ms``."""

    id: str
    event: str
    match: Expr | None
    timeout_ms: int
    on_event: str | None
    on_timeout: str | None


@dataclass(frozen=True, slots=True)
class Case:
    when: Expr
    goto: str


@dataclass(frozen=True, slots=True)
class Branch:
    """Go to the first case whose condition holds, else to ``otherwise`` (YAML ``else``)."""

    id: str
    cases: tuple[Case, ...]
    otherwise: str | None


@dataclass(frozen=True, slots=True)
class ExitStep:
    id: str


Step = Act | Wait | WaitFor | Branch | ExitStep


@dataclass(frozen=True, slots=True)
class Journey:
    id: str
    journey_class: JourneyClass
    priority: int
    pause_on_open_ticket: bool
    reentry: Reentry
    entry: Entry
    capture: tuple[tuple[str, Expr], ...]
    """Journey variables, name and expression, in the order written."""
    exits: tuple[Exit, ...]
    steps: tuple[Step, ...]
    """Never empty; the first step is where every instance starts."""

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    when: Expr


@dataclass(frozen=True, slots=True)
class Catalogue:
    name: str
    version: int
    journeys: tuple[Journey, ...]
    lifecycle: tuple[Stage, ...]
    digest: str
    """sha256 of the canonical content (comments and layout excluded), in hex."""
    actions: tuple[Action, ...] = ()
    levers: Levers = field(default_factory=Levers)
    contact: ContactPolicy = DEFAULT_POLICY

    def action(self, action_id: str) -> Action | None:
        return next((a for a in self.actions if a.action_id == action_id), None)

    def journey(self, journey_id: str) -> Journey:
        for journey in self.journeys:
            if journey.id == journey_id:
                return journey
        raise KeyError(journey_id)


def stage_of(catalogue: Catalogue, profile_ctx: Mapping[str, Any], now_ms: int) -> str | None:
    """The first lifecycle stage whose condition holds for the profile, or None.

    >>> from engine.journey_loader import load_catalogue
    >>> cat = load_catalogue('''
    ... catalogue: tiny
    ... version: 1
    ... journeys:
    ...   - {id: hello, class: service, priority: 1, entry: {event: web.signup},
    ...      steps: [{id: done, exit: true}]}
    ... lifecycle:
    ...   - {stage: retention, when: "profile.orders >= 1"}
    ...   - {stage: awareness, when: "true"}
    ... ''')
    >>> stage_of(cat, {"orders": 2}, 0), stage_of(cat, {}, 0)
    ('retention', 'awareness')
    """
    ctx = {"profile": profile_ctx, "now": now_ms}
    for stage in catalogue.lifecycle:  # ``when.test``, one call less per stage
        if stage.when.run(ctx) is True:
            return stage.name
    return None


def profile_fields(catalogue: Catalogue) -> frozenset[str] | None:
    """The fields of the profile's view (``engine.profile_view``) that the catalogue's
    conditions read, ``name`` of each ``profile.name`` in any of them (journeys, their
    captures and steps, the lifecycle, the actions); None when one reads ``profile``
    whole.

    >>> from engine.journey_loader import load_catalogue
    >>> cat = load_catalogue('''
    ... catalogue: tiny
    ... version: 1
    ... journeys:
    ...   - {id: hello, class: service, priority: 1,
    ...      entry: {event: web.signup, when: "len(profile.cart) > 0"},
    ...      steps: [{id: done, exit: true}]}
    ... lifecycle:
    ...   - {stage: retention, when: "profile.orders >= 1"}
    ... ''')
    >>> sorted(profile_fields(cat))  # the default actions' conditions read open tickets
    ['cart', 'open_tickets', 'orders']
    """
    found: set[str] = set()
    for expr in _expressions(catalogue):
        for path in expr.paths():
            root, _, rest = path.partition(".")
            if root == "profile":
                if not rest:
                    return None
                found.add(rest.split(".", 1)[0])
    return frozenset(found)


def _expressions(value: Any) -> Iterator[Expr]:
    """Every condition inside ``value``, wherever a catalogue holds one."""
    if isinstance(value, Expr):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _expressions(item)
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from _expressions(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _expressions(item)


def canonical(catalogue: Catalogue) -> bytes:
    """The content the digest covers: sorted-key JSON of every field but the digest,
    with each step's kind and each condition's source text."""
    return json.dumps(_plain(catalogue), sort_keys=True, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, Expr):
        return value.source
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, frozenset):
        return sorted(value)
    if is_dataclass(value) and not isinstance(value, type):
        doc = {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name != "digest"}
        return {"kind": type(value).__name__, **doc}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
