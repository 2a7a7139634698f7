"""Versioned event contracts, as code: the single source of the JSON Schema files.

Each event type has a history of versions, oldest first; the last one is what the
engine accepts now. A new version may add optional fields and widen types, never add a
required field or narrow a type (``topics.compat`` checks that, and a test runs the
check over every history). ``topics/schemas/`` holds the exported JSON Schema files.

Every event shares the envelope: ``event_id``, ``customer_id`` (web events may carry
only an ``anonymous_id`` instead), ``type`` and ``time`` (RFC 3339 or epoch ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["str", "number", "int", "bool", "object"]
Format = Literal["country", "timezone"]

FORMATS: Mapping[Format, str] = {
    "country": r"^[A-Z]{2}(?!\n)$",
    "timezone": r"^[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*(?!\n)$",
}
"""The text shape of each named format, as a regex both the parser and the exported
schemas use. ``country`` is an ISO 3166-1 alpha-2 code in upper case (``DE``); whether
the code is assigned is not checked. ``timezone`` is shaped like an IANA tz database
name (``Europe/Berlin``, ``UTC``, ``Etc/GMT+5``); the parser also looks the name up with
``zoneinfo``, which no schema can do. ``(?!\\n)`` because Python's ``$`` also matches
before a final newline."""

MAX_ID_LENGTH = 128
"""Longest accepted customer_id, anonymous_id, event_id and other identifiers."""


@dataclass(frozen=True, slots=True)
class Field:
    kind: Kind
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    max_length: int | None = None
    format: Format | None = None
    """A named text shape from :data:`FORMATS` (``str`` fields only)."""
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Contract:
    """One version of one event type's payload (beyond the envelope)."""

    source: str
    type: str
    version: int
    fields: Mapping[str, Field] = field(default_factory=dict)
    doc: str = ""
    anonymous: bool = False
    """True when the event may identify the person by ``anonymous_id`` alone."""

    @property
    def name(self) -> str:
        return f"{self.source}.{self.type}"


def _id(doc: str, required: bool = True) -> Field:
    return Field("str", required=required, max_length=MAX_ID_LENGTH, doc=doc)


CHANNEL_NAMES = ("email", "sms", "push", "inapp", "agent")

ENVELOPE: Mapping[str, Field] = {
    "event_id": _id("Unique per source; a repeated (source, event_id) is a duplicate."),
    "customer_id": _id("The customer; also the record key.", required=False),
    "type": Field("str", required=True, doc="The event type."),
    "time": Field("str", required=True, doc="Event time: RFC 3339 with offset, or epoch ms."),
}
"""Fields every event carries. ``customer_id`` is required unless the contract is
``anonymous`` and ``anonymous_id`` is given; ``time`` may also be an integer."""

_WEB: Mapping[str, Field] = {
    "anonymous_id": _id("Browser or device id before the visitor is known.", required=False),
    "device": Field("str", choices=("mobile", "desktop", "tablet")),
    "session_id": _id("Web session.", required=False),
}
_PRODUCT = _id("Product id.")
_CATEGORY = Field("str", max_length=64, doc="Product category.")
_MONEY = Field("number", required=True, minimum=0.0, doc="Amount in the shop's currency.")
_TICKET = _id("Support ticket id.")
_DECISION = _id("The decision this outcome answers.")
_CHANNEL = Field("str", required=True, choices=CHANNEL_NAMES, doc="Delivery channel.")


def _web(etype: str, doc: str, **extra: Field) -> Contract:
    return Contract("web", etype, 1, {**_WEB, **extra}, doc, anonymous=True)


def _v1(source: str, etype: str, doc: str, **fields: Field) -> Contract:
    return Contract(source, etype, 1, fields, doc)


def _next(previous: Contract, **added: Field) -> Contract:
    """The version after ``previous``, with optional fields added."""
    return replace(previous, version=previous.version + 1, fields={**previous.fields, **added})


_ATTRIBUTES: Mapping[str, Field] = {
    "timezone": Field(
        "str", max_length=64, format="timezone", doc="IANA time zone, e.g. Europe/Berlin."
    ),
    "country": Field("str", max_length=2, format="country", doc="ISO 3166-1 alpha-2, e.g. DE."),
    "tier": Field("str", max_length=32, doc="The customer's tier, as the shop names it."),
}
"""What a login or signup may tell about the customer (version 2 of both)."""
_LOGIN = _web("login", "The visitor logged in; with anonymous_id it links the two.")
_SIGNUP = _web("signup", "The visitor signed up; with anonymous_id it links the two.")


_OUTCOME_DOCS = {
    "delivered": "The channel delivered the action.",
    "opened": "The customer opened it.",
    "clicked": "The customer clicked through.",
    "converted": "The customer did what the action asked (a positive reward).",
    "dismissed": "The customer dismissed it (a negative reward).",
    "bounced": "The channel could not deliver it.",
    "unsubscribed": "The customer unsubscribed from the channel.",
    "complained": "The customer reported it as unwanted.",
}

_FIRST: Mapping[str, Contract] = {
    c.name: c
    for c in (
        _web("page_view", "A page was viewed.", url=Field("str", max_length=2048)),
        _web(
            "product_view",
            "A product page was viewed.",
            product_id=_PRODUCT,
            category=_CATEGORY,
            price=Field("number", minimum=0.0),
        ),
        _web("search", "A site search.", query=Field("str", required=True, max_length=512)),
        _web(
            "add_to_cart",
            "A product was added to the cart.",
            product_id=_PRODUCT,
            category=_CATEGORY,
            price=_MONEY,
        ),
        _web("remove_from_cart", "A product was removed from the cart.", product_id=_PRODUCT),
        _web("checkout_started", "Checkout began."),
        _LOGIN,
        _SIGNUP,
        _v1(
            "support",
            "ticket_opened",
            "A support ticket was opened.",
            ticket_id=_TICKET,
            priority=Field("str", choices=("low", "normal", "high", "urgent")),
        ),
        _v1("support", "ticket_updated", "A ticket changed.", ticket_id=_TICKET),
        _v1("support", "ticket_resolved", "A ticket was resolved.", ticket_id=_TICKET),
        _v1("support", "chat_started", "A support chat began."),
        _v1(
            "support",
            "csat_submitted",
            "A satisfaction score.",
            score=Field("int", required=True, minimum=1, maximum=5),
        ),
        _v1(
            "support",
            "nps_submitted",
            "A net promoter score.",
            score=Field("int", required=True, minimum=0, maximum=10),
        ),
        _v1("purchase", "order_placed", "An order.", order_id=_id("Order id."), amount=_MONEY),
        _v1(
            "purchase",
            "order_cancelled",
            "An order was cancelled.",
            order_id=_id("Order id."),
            amount=_MONEY,
        ),
        _v1(
            "purchase",
            "refund_issued",
            "Money was refunded.",
            order_id=_id("Order id."),
            amount=_MONEY,
        ),
        _v1("purchase", "subscription_started", "A subscription began.", plan=_CATEGORY),
        _v1("purchase", "subscription_cancelled", "A subscription ended.", plan=_CATEGORY),
        *(
            _v1(
                "outcome",
                name,
                doc,
                decision_id=_DECISION,
                channel=Field("str", choices=CHANNEL_NAMES),
            )
            for name, doc in _OUTCOME_DOCS.items()
        ),
        _v1("consent", "opt_in", "The customer allows a channel.", channel=_CHANNEL),
        _v1("consent", "opt_out", "The customer withdraws a channel.", channel=_CHANNEL),
        _v1("consent", "erasure_requested", "The customer asks to be forgotten."),
    )
}

HISTORY: Mapping[str, tuple[Contract, ...]] = {
    **{name: (c,) for name, c in _FIRST.items()},
    _LOGIN.name: (_LOGIN, _next(_LOGIN, **_ATTRIBUTES)),
    _SIGNUP.name: (_SIGNUP, _next(_SIGNUP, **_ATTRIBUTES)),
}

CURRENT: Mapping[str, Contract] = {name: versions[-1] for name, versions in HISTORY.items()}
"""The version the engine validates against, by ``source.type``."""

SOURCES: tuple[str, ...] = tuple(dict.fromkeys(c.source for c in CURRENT.values()))


def contract_for(source: str, etype: str) -> Contract | None:
    return CURRENT.get(f"{source}.{etype}")


def types_of(source: str) -> list[str]:
    return [c.type for c in CURRENT.values() if c.source == source]


DECISION = Contract(
    "decision",
    "decision",
    2,
    {
        "decision_id": _id("Derived from customer, event and step: stable under replay."),
        "customer_id": _id("The customer; also the record key."),
        "event_id": _id("The event that triggered the decision."),
        "event_source": Field("str", required=True, doc="Source of that event."),
        "event_type": Field("str", required=True, doc="Type of that event."),
        "event_time_ms": Field("int", required=True, minimum=0, doc="Its event time."),
        "action": Field("str", required=True, doc='The action, or "none" to stay quiet.'),
        "channel": Field("str", choices=CHANNEL_NAMES, doc="Null when the action is none."),
        "action_class": Field("str", choices=("marketing", "service", "transactional")),
        "score": Field("number", minimum=0.0, maximum=1.0, doc="Propensity of the choice."),
        "explored": Field("bool", required=True, doc="Chosen by exploration, not the model."),
        "reasons": Field("object", required=True, doc="Why, as a list of short sentences."),
        "model_version": Field("str", required=True, doc="The policy and its update count."),
        "candidates": Field("object", required=True, doc="Every action and channel weighed."),
        "features": Field("object", required=True, doc="What the model saw."),
        "decided_at_ms": Field("int", required=True, minimum=0, doc="Worker wall clock."),
        "journey": Field("str", doc="The journey that acted; null for next-best-action."),
        "catalogue_version": Field("str", doc="Journey catalogue in force: name@version."),
        "stage": Field("str", doc="Lifecycle stage at decision time (catalogue rules)."),
        "propensity": Field(
            "number",
            minimum=0.0,
            maximum=1.0,
            doc="Probability the policy took this action, exploration included.",
        ),
        "holdout": Field("bool", doc="The customer is in the holdout group (no marketing)."),
    },
    "What Segue writes to cx.decisions.<channel> and cx.decisions.log.",
)
