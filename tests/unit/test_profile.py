from __future__ import annotations

import random
import re
from dataclasses import fields, replace
from pathlib import Path

import orjson
import pytest

from engine.decay import DAY_S, Activity
from engine.dedup import short_hash
from engine.expr import compile_expr
from engine.journey_loader import default_catalogue
from engine.journey_runtime import on_event
from engine.pending import Pending
from engine.profile import MAX_OPEN_TICKETS, MAX_PENDING, Profile
from engine.profile_updates import (
    apply_event,
    record_contact,
    record_outcome,
    remember,
    seen_before,
    take_pending,
)
from engine.profile_view import VIEW_FIELDS, view
from topics.events import Event

T = 1_800_000_000_000
DATA = Path(__file__).parent / "data"
ENGINE = Path(__file__).resolve().parents[2] / "engine"


def ev(source: str, etype: str, t: int = T, **data: object) -> Event:
    return Event(source, etype, f"e-{etype}-{t}", "c1", t, data)


def apply(p: Profile, e: Event, offset: int = 0) -> Profile:
    return apply_event(p, e, topic=f"cx.{e.source}", partition=0, offset=offset)


def pending(i: int) -> Pending:
    return Pending(short_hash(f"d{i}"), "discount_offer:sms", (0.5,), 0.5, False, "m/1", T)


def test_cart_tickets_orders_and_consent_are_tracked() -> None:
    p = Profile("c1")
    p = apply(p, ev("web", "add_to_cart", product_id="p1", price=10.0, category="shoes"), 0)
    p = apply(p, ev("web", "add_to_cart", product_id="p2", price=5.0, device="mobile"), 1)
    p = apply(p, ev("web", "remove_from_cart", product_id="p2"), 2)
    assert p.cart == {"p1": 10.0}
    assert p.recent.categories == {"shoes": 1.0} and p.mobile_events == 1 and p.web_events == 3
    p = apply(p, ev("support", "ticket_opened", ticket_id="t1"), 0)
    assert p.open_tickets == {"t1": "normal"}
    p = apply(p, ev("support", "ticket_resolved", ticket_id="t1"), 1)
    assert p.open_tickets == {}
    p = apply(p, ev("purchase", "order_placed", order_id="o1", amount=10.0), 0)
    assert (p.orders, p.total_spend, p.cart, p.last_order_ms) == (1, 10.0, {}, T)
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


def test_an_unsubscribe_or_complaint_withdraws_the_channel_until_an_opt_in() -> None:
    p = apply(Profile("c1"), ev("outcome", "unsubscribed", decision_id="d", channel="email"))
    p = apply(p, ev("outcome", "complained", decision_id="d", channel="push"))
    assert p.opted_out == ("email", "push")
    p = apply(p, ev("consent", "opt_in", channel="push"))
    assert p.opted_out == ("email",)


def test_login_and_signup_set_the_attributes_they_carry() -> None:
    p = apply(Profile("c1"), ev("web", "signup", timezone="Asia/Tokyo", country="JP", tier="gold"))
    assert (p.timezone, p.country, p.tier) == ("Asia/Tokyo", "JP", "gold")
    p = apply(p, ev("web", "login", t=T + 1, country="DE"))  # what it leaves out stays
    assert (p.timezone, p.country, p.tier) == ("Asia/Tokyo", "DE", "gold")


def test_a_subscription_plan_does_not_set_the_tier() -> None:
    p = apply(Profile("c1", tier="silver"), ev("purchase", "subscription_started", plan="box"))
    assert p.tier == "silver"


def test_orders_and_refunds_move_lifetime_and_recent_spend() -> None:
    p = apply(Profile("c1"), ev("purchase", "order_placed", order_id="o1", amount=40.0))
    p = apply(p, ev("purchase", "order_placed", t=T - DAY_S * 1000, order_id="o0", amount=10.0))
    assert (p.orders, p.total_spend, p.last_order_ms) == (2, 50.0, T)  # a late order
    p = apply(p, ev("purchase", "refund_issued", t=T + 1000, order_id="o1", amount=40.0))
    assert p.total_spend == 10.0
    assert p.recent.orders == pytest.approx(1.977, abs=1e-3)
    assert p.recent.spend == pytest.approx(9.77, abs=0.01)


def test_page_and_product_views_are_visits() -> None:
    p = Profile("c1")
    for etype in ("page_view", "product_view", "search", "add_to_cart"):
        p = apply(p, ev("web", etype, product_id="p", price=1.0, category="toys"))
    assert p.recent.visits == 2.0 and p.recent.categories == {"toys": 2.0}


def test_open_tickets_keep_their_priority_and_are_bounded() -> None:
    p = apply(Profile("c1"), ev("support", "ticket_opened", ticket_id="t0", priority="urgent"))
    for i in range(1, MAX_OPEN_TICKETS + 1):
        p = apply(p, ev("support", "ticket_opened", ticket_id=f"t{i}", priority="low"))
    assert len(p.open_tickets) == MAX_OPEN_TICKETS and "t0" not in p.open_tickets
    p = apply(p, ev("support", "ticket_opened", ticket_id="t5", priority="high"))
    p = apply(p, ev("support", "ticket_opened", ticket_id="t5"))  # names no priority
    assert p.open_tickets["t5"] == "high" and list(p.open_tickets)[-1] == f"t{MAX_OPEN_TICKETS}"


def test_the_latest_csat_and_nps_are_kept_with_their_time() -> None:
    p = apply(Profile("c1"), ev("support", "csat_submitted", t=T, score=2))
    p = apply(p, ev("support", "csat_submitted", t=T - 1000, score=5))  # older, late
    p = apply(p, ev("support", "nps_submitted", t=T + 1000, score=9))
    assert (p.csat, p.csat_ms, p.nps, p.nps_ms) == (2, T, 9, T + 1000)


def test_contacts_are_recorded_per_channel_in_seconds() -> None:
    p = record_contact(Profile("c1"), "email", T + 999)
    p = record_contact(p, "email", T + 60_000)
    p = record_contact(p, "push", T)
    assert p.contacts == {"email": (T // 1000, 60), "push": (T // 1000,)}


def test_dismissals_are_remembered_per_action_in_seconds_other_outcomes_not() -> None:
    p = record_outcome(Profile("c1"), "discount_offer", "dismissed", T + 999)
    assert record_outcome(p, "discount_offer", "converted", T + 5_000) is p
    assert record_outcome(p, "discount_offer", "unsubscribed", T + 5_000) is p
    p = record_outcome(p, "discount_offer", "dismissed", T + 86_400_000)
    assert p.dismissals == {"discount_offer": (T // 1000, 86_400)}
    assert Profile.decode(p.encode()) == p
    assert len(p.encode()) - len(Profile("c1").encode()) == len(
        b',"dismissals":{"discount_offer":[1800000000,86400]}'
    )


def test_pending_decisions_are_bounded_and_taken_once() -> None:
    p = Profile("c1")
    for i in range(MAX_PENDING + 2):
        p = remember(p, pending(i))
    assert [x.key for x in p.pending] == [short_hash(f"d{i}") for i in range(2, MAX_PENDING + 2)]
    assert p.decisions == MAX_PENDING + 2
    p, got = take_pending(p, "d3")
    assert got is not None and got.key == short_hash("d3")
    p, again = take_pending(p, "d3")
    assert again is None


def full() -> Profile:
    """A profile with every field away from its default."""
    p = Profile(
        "c1", timezone="Europe/Berlin", country="DE", tier="gold", decisions=3, conversions=1
    )
    events = [
        ev("web", "product_view", device="mobile", category="shoes", product_id="p1"),
        ev("support", "ticket_opened", ticket_id="t1", priority="high"),
        ev("support", "csat_submitted", score=4),
        ev("support", "nps_submitted", score=8),
        ev("purchase", "order_placed", t=T - 1, order_id="o1", amount=10.0),
        ev("web", "add_to_cart", product_id="p1", price=10.0),
        ev("consent", "opt_out", channel="sms"),
        ev("outcome", "converted", decision_id="d1", channel="email"),
    ]
    for i, e in enumerate(events):
        p = apply(p, e, offset=i)
    p = record_contact(remember(p, pending(1)), "email", T)
    p = record_outcome(p, "discount_offer", "dismissed", T)
    cart = {"name": "web.add_to_cart", "product_id": "p1", "price": 10.0}
    journeys, _ = on_event(default_catalogue(), p.journeys, cart, view(p, T), now_ms=T)
    assert journeys.active  # cart recovery is waiting for an order
    deferred = {"cart_recovery:1:remind:0:0": T + 3_600_000}
    return replace(p, seen={short_hash("web//e1"): T // 1000}, journeys=journeys, deferred=deferred)


def test_encode_decode_round_trip() -> None:
    p = full()
    names = [f.name for f in fields(p)]
    assert [f for f in names if getattr(p, f) == getattr(Profile("c1"), f)] == ["customer_id"]
    assert Profile.decode(p.encode()) == p


def test_encode_writes_the_bytes_the_codec_wrote_before_it_was_rewritten() -> None:
    """Scenario: the codec was rewritten for speed (a stored document built in one pass,
    profiles filled through their instance dict). We expect every field of a full
    profile to be written byte for byte as the codec at commit ce99640 wrote it, and
    those bytes to decode to the same profile: the table and its changelog hold them."""
    stored = (DATA / "profile_written_by_ce99640.json").read_bytes()
    assert full().encode() == stored
    assert Profile.decode(stored) == full()


def test_decode_builds_the_profile_init_would_and_refuses_what_it_would() -> None:
    """Scenario: ``decode`` builds profiles without the dataclass ``__init__``.
    We expect the same profile, defaults that are fresh objects per profile, and the
    TypeError ``__init__`` raises for an unknown field or a missing customer id."""
    p = full()
    again = Profile.decode(p.encode())
    assert again == p and again.recent == p.recent and again.journeys == p.journeys
    a, b = Profile.decode(b'{"customer_id":"a"}'), Profile.decode(b'{"customer_id":"b"}')
    assert a == Profile("a") and a.cart == {} and a.cart is not b.cart
    with pytest.raises(TypeError, match="no field 'colour'"):
        Profile.decode(b'{"customer_id":"c1","colour":"red"}')
    with pytest.raises(TypeError, match="customer_id"):
        Profile.decode(b'{"orders":2}')


def test_a_profile_written_before_these_fields_still_decodes() -> None:
    """Scenario: a worker of this version restores its table from a changelog written by
    commit 0110739 (ten events, four pending decisions with whole records).
    We expect every fact to survive, in the new form, and the record to shrink."""
    raw = (DATA / "profile_written_by_0110739.json").read_bytes()
    p = Profile.decode(raw)
    assert (p.orders, p.total_spend, p.opted_out, p.decisions) == (1, 40.0, ("sms",), 8)
    assert p.open_tickets == {"t3": "normal"}
    assert p.recent == Activity(1_800_000_540, categories={"shoes": 2.0})
    assert p.counts["support.ticket_opened"] == 3 and p.offsets["cx.support/0"] == 9
    assert seen_before(p, "web//e1") and not seen_before(p, "web//e10")
    assert [x.arm for x in p.pending] == ["support_followup:agent"] + 2 * [
        "product_recommendation:push"
    ] + ["support_followup:agent"]
    assert p.pending[0].key == short_hash("d-5469c1acb373ed2e57377d830ba3c45d")
    assert (p.timezone, p.csat, p.contacts, p.last_order_ms) == (None, None, {}, 0)
    assert p.dismissals == {}
    assert Profile.decode(p.encode()) == p
    assert len(p.encode()) < len(raw) // 4


def test_the_view_is_plain_json_with_exactly_the_documented_names() -> None:
    v = view(full(), now_ms=T)
    assert set(v) == VIEW_FIELDS
    assert orjson.loads(orjson.dumps(v)) == v
    assert v["cart"] == {"p1": 10.0} and v["cart_value"] == 10.0
    assert (v["orders"], v["total_spend"], v["lifetime_value"]) == (1, 10.0, 10.0)
    assert v["open_tickets"] == ["t1"] and v["top_ticket_priority"] == "high"
    assert (v["csat"], v["nps"], v["csat_ms"], v["last_order_ms"]) == (4, 8, T, T - 1)
    assert (v["timezone"], v["country"], v["tier"], v["opted_out"]) == (
        "Europe/Berlin",
        "DE",
        "gold",
        ["sms"],
    )
    assert v["contacts_7d"] == {"email": 1} and v["last_contact_ms"] == {"email": T}
    assert (v["web_events"], v["last_seen_ms"], v["visits_7d"]) == (2, T, 1.0)


def test_the_view_decays_at_the_time_it_is_read() -> None:
    p = record_contact(full(), "email", T + 2 * DAY_S * 1000)
    week = view(p, now_ms=T + 7 * DAY_S * 1000)
    assert week["visits_7d"] == 0.5 and week["category_views_7d"] == {"shoes": 0.5}
    assert week["orders_30d"] == pytest.approx(0.5 ** (7 / 30), abs=1e-3)
    assert week["contacts_7d"] == {"email": 2} and week["contacts_24h"] == {"email": 0}
    assert view(p, now_ms=T - 10_000)["visits_7d"] == 1.0  # never grows when read early


def test_an_empty_profile_views_unknown_times_as_null() -> None:
    v = view(Profile("c1"), now_ms=T)
    assert (v["last_seen_ms"], v["last_order_ms"], v["csat"], v["top_ticket_priority"]) == (
        None,
        None,
        None,
        None,
    )
    assert (v["open_tickets"], v["cart"], v["contacts_24h"]) == ([], {}, {})


def test_the_default_catalogues_profile_conditions_read_the_view() -> None:
    text = (ENGINE / "default_journeys.yaml").read_text()
    assert set(re.findall(r"profile\.(\w+)", text)) <= VIEW_FIELDS
    ctx = {"profile": view(full(), now_ms=T + 31 * DAY_S * 1000), "now": T + 31 * DAY_S * 1000}
    for condition, expected in [
        ("len(profile.open_tickets) > 0", True),
        ("profile.orders >= 1", True),
        ("len(profile.cart) > 0", True),
        ("profile.web_events >= 3", False),
        ("days_since(profile.last_seen_ms) >= 30", True),
    ]:
        assert compile_expr(condition, roots={"profile", "now"}).test(ctx) is expected, condition


def test_every_way_of_building_a_profile_keeps_its_fields_in_field_order() -> None:
    """``Profile.encode`` reads the instance dict in order (``engine.profile._document``):
    a profile built by ``__init__``, ``decode``, ``replace``, ``apply_event`` or a
    contact must hold exactly the fields, in field order, or the stored bytes would
    change."""
    names = [f.name for f in fields(Profile)]
    built = Profile("c1")
    applied = apply(built, ev("web", "product_view", product_id="p1", category="shoes"))
    contacted = record_contact(applied, "email", T)
    held = remember(contacted, pending(1))
    decoded = Profile.decode(held.encode())
    for p in (built, applied, contacted, held, decoded, replace(held, orders=3)):
        assert list(vars(p)) == names
    assert decoded == held
    assert decoded.encode() == held.encode()


def test_the_view_at_the_counters_own_time_is_their_stored_values_rounded() -> None:
    """``view`` skips decay and ``round`` when read at or before ``recent.at_s``: the
    counters are stored rounded (``decay.record``, ``decode``) to the places the view
    rounds to, and rounding a rounded value changes nothing. Shown against the
    rounding it skips, over counters built by many events of odd amounts and gaps."""
    rng = random.Random(7)
    p, t = Profile("c1"), T
    for i in range(400):
        t += rng.choice((0, 1, 999, 61_000, 3_600_000, 2 * DAY_S * 1000))
        kind = rng.random()
        if kind < 0.5:
            e = ev("web", "product_view", t, product_id="p1", category=rng.choice("abcdefg"))
        elif kind < 0.7:
            e = ev("web", "add_to_cart", t, product_id=f"p{i}", price=1.0, category="h")
        elif kind < 0.9:
            e = ev("purchase", "order_placed", t, amount=round(rng.uniform(0, 300), 2))
        else:
            e = ev("purchase", "refund_issued", t, amount=round(rng.uniform(0, 50), 3))
        p = apply(p, e, offset=i)
        r = p.recent
        for q in (p, Profile.decode(p.encode())):
            for now_ms in (r.at_s * 1000, r.at_s * 1000 + 999, r.at_s * 1000 - 5_000):
                v = view(q, now_ms)
                assert v["visits_7d"] == round(r.visits, 3)
                assert v["orders_30d"] == round(r.orders, 3)
                assert v["spend_30d"] == round(r.spend, 2)
                assert v["category_views_7d"] == {k: round(c, 3) for k, c in r.categories.items()}
    assert p.recent.categories and p.recent.spend and p.recent.visits  # all were exercised


def test_a_profile_with_no_recent_counters_views_zeros_at_any_time() -> None:
    for now_ms in (0, T, T + 400 * DAY_S * 1000):
        v = view(Profile("c1"), now_ms)
        assert (v["visits_7d"], v["orders_30d"], v["spend_30d"]) == (0.0, 0.0, 0.0)
        assert v["category_views_7d"] == {}
