"""The action catalogue: what Segue can do for a customer, and when it may.

Eligibility rules are named, so the decision log can say which rule excluded each
candidate. Marketing actions are never offered while a support ticket is open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.profile import Profile
from topics.events import Event

ActionClass = Literal["marketing", "service", "transactional"]
Rule = Callable[[Profile, Event], bool]


@dataclass(frozen=True, slots=True)
class Action:
    action_id: str
    action_class: ActionClass
    channels: tuple[str, ...]
    value: float
    """Business value of a conversion, used to rank actions of equal propensity."""
    requires: tuple[tuple[str, Rule], ...] = ()
    """Named conditions that must all hold for the action to be eligible."""


def _has_cart(p: Profile, ev: Event) -> bool:
    return bool(p.cart)


def _has_open_ticket(p: Profile, ev: Event) -> bool:
    return bool(p.open_tickets)


def _support_event(p: Profile, ev: Event) -> bool:
    return ev.source == "support"


DEFAULT_ACTIONS: tuple[Action, ...] = (
    Action("cart_reminder", "marketing", ("email", "push"), 1.0, (("cart_not_empty", _has_cart),)),
    Action("discount_offer", "marketing", ("email", "sms"), 1.0),
    Action("product_recommendation", "marketing", ("email", "push", "inapp"), 1.0),
    Action(
        "support_followup",
        "service",
        ("agent",),
        1.0,
        (("open_ticket", _has_open_ticket), ("support_event", _support_event)),
    ),
)

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


JOURNEY_ACTIONS: tuple[str, ...] = (
    "welcome_series",
    "onboarding_tip",
    "cross_sell_offer",
    "recovery_offer",
    "win_back_offer",
    "sales_followup",
)
"""Actions only journey steps take; next-best-action does not weigh them on every event."""


PEOPLE_ACTIONS: frozenset[str] = frozenset({"support_followup", "sales_followup"})
"""Actions a person carries out (service or sales staff): they go to the agent channel,
and nothing else does."""


def known_action_ids() -> frozenset[str]:
    """Every action id a journey step may name."""
    return frozenset(a.action_id for a in DEFAULT_ACTIONS) | frozenset(JOURNEY_ACTIONS)


def arms(actions: tuple[Action, ...] = DEFAULT_ACTIONS) -> list[str]:
    """Every ``action:channel`` pair the model scores."""
    return [f"{a.action_id}:{c}" for a in actions for c in a.channels]
