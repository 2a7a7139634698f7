from __future__ import annotations

from engine.profile import MAX_PENDING, Pending, Profile, apply_event, remember, take_pending
from topics.events import Event


def ev(source: str, etype: str, t: int = 1000, **data: object) -> Event:
    return Event(source, etype, f"e-{etype}-{t}", "c1", t, data)


def apply(p: Profile, e: Event, offset: int = 0) -> Profile:
    return apply_event(p, e, topic=f"cx.{e.source}", partition=0, offset=offset)


def test_cart_tickets_orders_and_consent_are_tracked() -> None:
    p = Profile("c1")
    p = apply(p, ev("web", "add_to_cart", product_id="p1", price=10.0, category="shoes"), 0)
    p = apply(p, ev("web", "add_to_cart", product_id="p2", price=5.0, device="mobile"), 1)
    p = apply(p, ev("web", "remove_from_cart", product_id="p2"), 2)
    assert p.cart == {"p1": 10.0}
    assert p.categories == {"shoes": 1} and p.mobile_events == 1 and p.web_events == 3
    p = apply(p, ev("support", "ticket_opened", ticket_id="t1"), 0)
    assert p.open_tickets == ("t1",)
    p = apply(p, ev("support", "ticket_resolved", ticket_id="t1"), 1)
    assert p.open_tickets == ()
    p = apply(p, ev("purchase", "order_placed", order_id="o1", amount=10.0), 0)
    assert (p.orders, p.total_spend, p.cart) == (1, 10.0, {})
    p = apply(p, ev("consent", "opt_out", channel="sms"), 0)
    assert p.opted_out == ("sms",)
    p = apply(p, ev("consent", "opt_in", channel="sms"), 1)
    assert p.opted_out == ()


def test_late_event_does_not_move_recency_back_and_offsets_are_remembered() -> None:
    p = apply(Profile("c1"), ev("web", "login", t=5000), offset=7)
    p = apply(p, ev("web", "login", t=1000), offset=8)
    assert p.last_seen_ms == 5000 and p.first_seen_ms == 5000
    assert p.applied("cx.web", 0, 8) and p.applied("cx.web", 0, 3)
    assert not p.applied("cx.web", 0, 9) and not p.applied("cx.web", 1, 0)


def test_unsubscribe_outcome_withdraws_the_channel() -> None:
    p = apply(Profile("c1"), ev("outcome", "unsubscribed", decision_id="d", channel="email"))
    assert p.opted_out == ("email",)


def test_pending_decisions_are_bounded_and_taken_once() -> None:
    p = Profile("c1")
    for i in range(MAX_PENDING + 2):
        p = remember(p, Pending(f"d{i}", f"e{i}", {"features": {"bias": 1.0}}))
    assert [x.decision_id for x in p.pending] == [f"d{i}" for i in range(2, MAX_PENDING + 2)]
    p, got = take_pending(p, "d3")
    assert got is not None and got.decision_id == "d3"
    p, again = take_pending(p, "d3")
    assert again is None


def test_encode_decode_round_trip() -> None:
    p = apply(Profile("c1"), ev("web", "add_to_cart", product_id="p1", price=10.0))
    p = remember(p, Pending("d1", "e1", {"features": {"bias": 1.0}, "x": [1]}))
    assert Profile.decode(p.encode()) == p
