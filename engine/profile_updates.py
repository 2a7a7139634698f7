"""How each event changes a customer's profile (``engine.profile``).

``apply_event`` is a pure function: the old profile and an event in, the new profile
out. The pipeline (``engine.pipeline``) calls it and the functions below for each record.

What comes from where:

- attributes (``timezone``, ``country``, ``tier``): a ``web.login`` or ``web.signup``
  that carries them (contract version 2); the last one applied wins. A subscription's
  ``plan`` does not set the tier: a plan names what is delivered ("coffee-monthly"), a
  tier names the customer's standing, and ``subscription_cancelled`` could not tell
  which tier to fall back to.
- recent behaviour (``recent``, see ``engine.decay``): page and product views, product
  views and cart additions by category, orders and spend, decayed over time.
- support: open tickets with their priority (``normal`` when the event names none), and
  the last CSAT and NPS score with their event time (a late, older score does not
  replace a newer one).
- consent: ``opted_out`` channels; an unsubscribed or complained outcome or an opt-out
  adds one, an opt-in removes it.
- contact history: when each channel last reached the customer (``record_contact``).
- dismissals: when the customer lately dismissed each action (``record_outcome``), which
  the contact policy's outcome-based suppression counts (``engine.contact_policy``).
"""

from __future__ import annotations

from typing import Any

from engine import contacts, decay, dedup, dismissals
from engine.dedup import short_hash
from engine.pending import Pending
from engine.profile import (
    MAX_CART_ITEMS,
    MAX_OPEN_TICKETS,
    MAX_PENDING,
    Profile,
    changed,
    replaced,
)
from topics.events import Event

_ATTRIBUTES = ("timezone", "country", "tier")


def apply_event(
    p: Profile,
    ev: Event,
    *,
    topic: str,
    partition: int,
    offset: int,
    seen: dict[str, int] | None = None,
) -> Profile:
    """The profile after ``ev``; records the source offset so a replay is not re-applied,
    and ``seen``, the dedup memory with the event in it (``remembered``), when given: one
    copy of the profile instead of two."""
    counts = dict(p.counts)
    counter = f"{ev.source}.{ev.type}"
    counts[counter] = counts.get(counter, 0) + 1
    changes: dict[str, Any] = {
        "counts": counts,
        "first_seen_ms": ev.time_ms if p.first_seen_ms == 0 else p.first_seen_ms,
        # Late events must not move recency backwards.
        "last_seen_ms": max(p.last_seen_ms, ev.time_ms),
        "offsets": {**p.offsets, f"{topic}/{partition}": offset},
    }
    if seen is not None:
        changes["seen"] = seen
    data = ev.data
    time_s = ev.time_ms // 1000
    if ev.source == "web":
        if data.get("device") == "mobile":
            changes["mobile_events"] = p.mobile_events + 1
        category = str(data["category"]) if data.get("category") else None
        if ev.type == "page_view":
            changes["recent"] = decay.record(p.recent, time_s, visits=1.0)
        elif ev.type == "product_view":
            changes["recent"] = decay.record(p.recent, time_s, visits=1.0, category=category)
        elif ev.type == "add_to_cart":
            changes["recent"] = decay.record(p.recent, time_s, category=category)
        if ev.type == "add_to_cart" and len(p.cart) < MAX_CART_ITEMS:
            changes["cart"] = {**p.cart, str(data["product_id"]): float(data["price"])}
        elif ev.type == "remove_from_cart":
            changes["cart"] = {k: v for k, v in p.cart.items() if k != data["product_id"]}
        elif ev.type in ("login", "signup"):  # a loop, not a comprehension (a call)
            for k in _ATTRIBUTES:
                if (value := data.get(k)) is not None:
                    changes[k] = str(value)  # (apply_event: 23,400 where 24,500)
    elif ev.source == "support":
        changes.update(_support(p, ev))
    elif ev.source == "purchase":
        amount = float(data.get("amount", 0.0))
        if ev.type == "order_placed":
            changes.update(
                orders=p.orders + 1,
                total_spend=p.total_spend + amount,
                cart={},
                last_order_ms=max(p.last_order_ms, ev.time_ms),
                recent=decay.record(p.recent, time_s, orders=1.0, spend=amount),
            )
        elif ev.type in ("order_cancelled", "refund_issued"):
            changes["total_spend"] = max(0.0, p.total_spend - amount)
            changes["recent"] = decay.record(p.recent, time_s, spend=-amount)
    elif ev.source == "consent":
        channel = data.get("channel")
        if ev.type == "opt_out" and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
        elif ev.type == "opt_in":
            changes["opted_out"] = tuple(c for c in p.opted_out if c != channel)
    elif ev.source == "outcome":
        # Conversions are counted per decision by engine.attribution, where a click and
        # the purchase it leads to are one. An unsubscribe or complaint stops marketing
        # on that channel until an opt-in.
        channel = data.get("channel")
        if ev.type in ("unsubscribed", "complained") and channel and channel not in p.opted_out:
            changes["opted_out"] = (*p.opted_out, str(channel))
    return replaced(p, changes)


def _support(p: Profile, ev: Event) -> dict[str, Any]:
    data = ev.data
    ticket = str(data.get("ticket_id"))
    if ev.type == "ticket_opened":
        priority = data.get("priority") or p.open_tickets.get(ticket, "normal")
        opened = {**p.open_tickets, ticket: str(priority)}
        return {"open_tickets": dict(list(opened.items())[-MAX_OPEN_TICKETS:])}
    if ev.type == "ticket_resolved":
        return {"open_tickets": {t: v for t, v in p.open_tickets.items() if t != ticket}}
    if ev.type == "csat_submitted" and ev.time_ms >= p.csat_ms:
        return {"csat": int(data["score"]), "csat_ms": ev.time_ms}
    if ev.type == "nps_submitted" and ev.time_ms >= p.nps_ms:
        return {"nps": int(data["score"]), "nps_ms": ev.time_ms}
    return {}


def record_contact(p: Profile, channel: str, time_ms: int) -> Profile:
    """Remember that ``channel`` reached the customer at ``time_ms`` (the triggering
    event's time). Keeps ``engine.contacts.WINDOW_S`` and at most MAX_CONTACTS per
    channel, which is what a frequency cap needs."""
    # ``replaced``: the field is named here, so ``changed``'s check is not needed.
    return replaced(p, {"contacts": contacts.add(p.contacts, channel, time_ms // 1000)})


SUPPRESSING_OUTCOMES = frozenset({"dismissed"})
"""Outcomes the profile remembers per action for the contact policy's suppression. An
unsubscribe or complaint is not among them: it withdraws consent for the whole channel
(``apply_event``)."""


def record_outcome(p: Profile, action: str, outcome: str, time_ms: int) -> Profile:
    """Remember what the customer did with ``action`` at ``time_ms`` (the outcome's event
    time): a dismissal is kept, within ``engine.dismissals``' bounds; any other outcome
    leaves the profile as it is."""
    if outcome not in SUPPRESSING_OUTCOMES:
        return p
    return changed(p, dismissals=dismissals.add(p.dismissals, action, time_ms // 1000))


def seen_before(p: Profile, dedup_key: str) -> bool:
    return short_hash(dedup_key) in p.seen


def remembered(
    p: Profile, dedup_key: str, time_ms: int, *, window_ms: int, max_ids: int
) -> dict[str, int]:
    """The dedup memory with ``dedup_key`` remembered, less the ids older than the window
    and the oldest beyond ``max_ids`` (a duplicate arriving after that is applied again:
    the price of bounded state per customer). ``apply_event`` stores it."""
    return dedup.remember(
        p.seen,
        dedup_key,
        time_ms // 1000,
        now_s=max(time_ms, p.last_seen_ms) // 1000,
        window_s=window_ms // 1000,
        max_ids=max_ids,
    )


def merge(into: Profile, anon: Profile) -> Profile:
    """Fold an anonymous visitor's history into the customer they turned out to be."""
    counts = dict(into.counts)
    for k, n in anon.counts.items():
        counts[k] = counts.get(k, 0) + n
    first = [t for t in (into.first_seen_ms, anon.first_seen_ms) if t]
    return changed(
        into,
        counts=counts,
        recent=decay.combine(into.recent, anon.recent),
        mobile_events=into.mobile_events + anon.mobile_events,
        cart=dict(list({**anon.cart, **into.cart}.items())[:MAX_CART_ITEMS]),
        first_seen_ms=min(first) if first else 0,
        last_seen_ms=max(into.last_seen_ms, anon.last_seen_ms),
        seen=dedup.union(anon.seen, into.seen),
    )


def remember(p: Profile, pending: Pending) -> Profile:
    """Keep ``pending`` among the most recent decisions awaiting an outcome."""
    held = (*p.pending, pending)[-MAX_PENDING:]
    return replaced(p, {"pending": held, "decisions": p.decisions + 1})  # as ``record_contact``


def find_pending(p: Profile, decision_id: str) -> Pending | None:
    key = short_hash(decision_id)
    return next((item for item in p.pending if item.key == key), None)


def take_pending(p: Profile, decision_id: str) -> tuple[Profile, Pending | None]:
    """Remove and return the pending decision an outcome refers to, if still held."""
    item = find_pending(p, decision_id)
    if item is None:
        return p, None
    return changed(p, pending=tuple(x for x in p.pending if x is not item)), item
