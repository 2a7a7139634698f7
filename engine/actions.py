"""The action catalogue: what Segue can do for a customer, on which channels, and when.

Actions are data, in the ``actions`` section of the catalogue (``engine/journeys.py``
parses the file; this module reads its action and lever sections), so the business
changes what Segue may offer by publishing a catalogue, without a deploy::

    actions:
      - id: cart_reminder
        class: marketing            # marketing | service | transactional
        channels: [email, push]     # the channels it may go out on
        value: 1.0                  # business value of a conversion, > 0
        when:                       # optional named conditions; all must hold
          cart_not_empty: "len(profile.cart) > 0"
        stages: [purchase]          # optional: next-best-action offers it only then
        journeys: [cart_recovery]   # optional: the only journeys whose steps may take it
        next_best_action: true      # optional, default true: weighed at decision points
    levers:                         # optional: priority = propensity x value x weight
      actions: {discount_offer: 0.8}
      channels: {sms: 0.5}          # weight = the action's lever x the channel's lever

Conditions read ``profile`` (``engine.profile_view.view``), ``event`` (the triggering event's
payload with ``name``, as journeys see it) and ``now``. A condition that fails excludes
the candidate under the condition's name, which the decision log shows. Names are ids,
so they stay fit for a metric label.

A catalogue without an ``actions`` section gets the default catalogue's actions
(``engine/default_journeys.yaml``), and one without ``levers`` weighs every action 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import yaml

from engine.expr import Expr
from engine.frozen import FrozenDict
from engine.journey_checks import NodeReader
from topics.catalogue import CHANNELS

ActionClass = Literal["marketing", "service", "transactional"]
ACTION_CLASSES: tuple[ActionClass, ...] = ("marketing", "service", "transactional")
CONDITION_ROOTS = frozenset({"profile", "event", "now"})
MAX_VALUE = 1e9
MAX_WEIGHT = 1e3


@dataclass(frozen=True, slots=True)
class Action:
    action_id: str
    action_class: ActionClass
    channels: tuple[str, ...]
    value: float = 1.0
    """Business value of a conversion: ranks actions of equal propensity."""
    when: tuple[tuple[str, Expr], ...] = ()
    """Named conditions that must all hold for the action to be eligible."""
    stages: tuple[str, ...] = ()
    """Lifecycle stages in which next-best-action offers it; empty: any."""
    journeys: tuple[str, ...] = ()
    """The only journeys whose steps may take it; empty: any journey."""
    next_best_action: bool = True
    """Weighed by next-best-action at decision points; False: journey steps only."""

    def failed(self, ctx: Mapping[str, Any]) -> str | None:
        """The name of the first condition that does not hold, or None."""
        for name, rule in self.when:
            if rule.run(ctx) is not True:  # ``rule.test``, one call less per condition
                return name
        return None


def _frozen(d: Mapping[str, float] | None = None) -> Mapping[str, float]:
    return FrozenDict(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Levers:
    """Weights the business sets on actions and channels; each defaults to 1."""

    actions: Mapping[str, float] = field(default_factory=_frozen)
    channels: Mapping[str, float] = field(default_factory=_frozen)

    def weight(self, action: str, channel: str) -> float:
        """The weight of ``action`` on ``channel``: the product of their levers.

        >>> Levers(_frozen({"a": 0.5}), _frozen({"sms": 0.5})).weight("a", "sms")
        0.25
        """
        return self.actions.get(action, 1.0) * self.channels.get(channel, 1.0)


TRIGGERS: frozenset[str] = frozenset(
    {
        "web.product_view",
        "web.search",
        "web.add_to_cart",
        "web.checkout_started",
        "web.login",
        "support.ticket_opened",
        "support.ticket_updated",
        "support.ticket_resolved",
        "purchase.order_placed",
    }
)
"""Events that are decision points. Others only update the profile."""


def arms(actions: tuple[Action, ...]) -> list[str]:
    """Every ``action:channel`` pair next-best-action scores."""
    return [f"{a.action_id}:{c}" for a in actions if a.next_best_action for c in a.channels]


def read_actions(
    r: NodeReader, node: yaml.Node, stages: frozenset[str] | None
) -> tuple[Action, ...] | None:
    """The ``actions`` section; ``stages`` are the catalogue's lifecycle stage names (None
    when they did not parse, so stage names are not checked)."""
    items = r.sequence(node, "actions", non_empty=True)
    found = [_action(r, item, stages) for item in items or ()]
    seen: set[str] = set()
    for item, action in zip(items or (), found, strict=True):
        if action is not None and action.action_id in seen:
            r.report(item, f"duplicate action id {action.action_id!r}")
            return None
        if action is not None:
            seen.add(action.action_id)
    if items is None or any(a is None for a in found):
        return None
    return tuple(a for a in found if a is not None)


def _action(r: NodeReader, node: yaml.Node, stages: frozenset[str] | None) -> Action | None:
    required = ("id", "class", "channels", "value")
    optional = ("when", "stages", "journeys", "next_best_action")
    f = r.mapping(node, "an action", required, optional)
    if f is None:
        return None
    aid = r.name(f.get("id"), "action id")
    klass = r.choice(f.get("class"), "action class", ACTION_CLASSES)
    channels = _names(r, f.get("channels"), "channels", CHANNELS)
    value = r.number(f.get("value"), "value", 1e-9, MAX_VALUE)
    when: list[tuple[str, Expr]] | None = []
    pairs = r.pairs(f["when"], "when") if "when" in f else []
    if pairs is None:
        when = None
    for key, cond in pairs or []:
        name = r.name(key, "condition name")
        rule = r.condition(cond, "condition", CONDITION_ROOTS)
        if name is None or rule is None:
            when = None
        elif when is not None:
            when.append((name, rule))
    in_stages: tuple[str, ...] | None = ()
    if "stages" in f and stages is not None and not stages:
        r.report(f["stages"], "stages name lifecycle stages, and the catalogue defines none")
        in_stages = None
    elif "stages" in f:
        in_stages = _names(r, f["stages"], "stages", stages)
    journeys = _names(r, f["journeys"], "journeys", None) if "journeys" in f else ()
    nba: bool | None = True
    if "next_best_action" in f:
        nba = r.boolean(f["next_best_action"], "next_best_action")
    if None in (aid, klass, channels, value, when, in_stages, journeys, nba):
        return None
    assert aid and klass and channels and value and when is not None
    assert in_stages is not None and journeys is not None and nba is not None
    klass_ = cast(ActionClass, klass)
    return Action(aid, klass_, channels, value, tuple(when), in_stages, journeys, nba)


def _names(
    r: NodeReader, node: yaml.Node | None, what: str, known: frozenset[str] | tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """A non-empty list of distinct ids, each one of ``known`` when that is given."""
    items = r.sequence(node, what, non_empty=True)
    found: list[str | None] = []
    for item in items or ():
        name = r.name(item, what[:-1]) if known is None else r.choice(item, what[:-1], known)
        if name is not None and name in found:
            r.report(item, f"{name!r} is listed twice in {what}")
            name = None
        found.append(name)
    if items is None or None in found:
        return None
    return tuple(n for n in found if n is not None)


def read_levers(
    r: NodeReader, node: yaml.Node, actions: tuple[Action, ...] | None
) -> Levers | None:
    """The ``levers`` section: weights by action id and by channel."""
    f = r.mapping(node, "levers", (), ("actions", "channels"))
    if f is None:
        return None
    ids = None if actions is None else tuple(a.action_id for a in actions)
    by_action = _weights(r, f.get("actions"), "action", ids)
    by_channel = _weights(r, f.get("channels"), "channel", CHANNELS)
    if by_action is None or by_channel is None:
        return None
    return Levers(_frozen(by_action), _frozen(by_channel))


def _weights(
    r: NodeReader, node: yaml.Node | None, what: str, known: tuple[str, ...] | None
) -> dict[str, float] | None:
    if node is None:
        return {}
    out: dict[str, float] | None = {}
    for key, value in r.pairs(node, f"{what} levers") or []:
        name = r.name(key, what) if known is None else r.choice(key, what, known)
        weight = r.number(value, f"the weight of {key.value}", 0.0, MAX_WEIGHT)
        if name is None or weight is None or out is None:
            out = None
        else:
            out[name] = weight
    return out
