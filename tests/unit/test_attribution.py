"""Which held decision an outcome or a purchase answers, and what each teaches when it
leaves the memory (engine/attribution.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.attribution import (
    BOUGHT,
    CLICKED,
    OPEN,
    REFUSED,
    expire,
    hold,
    is_marketing,
    settle,
    teach,
)
from engine.dedup import short_hash
from engine.journey_loader import default_catalogue
from engine.pending import Pending
from engine.profile import MAX_PENDING, Profile
from models.features import NAMES
from models.policy import LogisticHeads
from topics.events import Event

T = 1_800_000_000_000
WINDOW = 3 * 86_400_000
X = tuple(0.5 for _ in NAMES)


def held(did: str, arm: str = "discount_offer:email", at_ms: int = T) -> Pending:
    return Pending(short_hash(did), arm, X, 0.3, False, "m/0", at_ms)


def outcome(kind: str, did: str, at_ms: int = T + 60_000) -> Event:
    return Event("outcome", kind, f"o-{kind}-{did}", "c1", at_ms, {"decision_id": did})


def order(amount: float, at_ms: int = T + 600_000) -> Event:
    return Event("purchase", "order_placed", f"p{at_ms}", "c1", at_ms, {"amount": amount})


def run(p: Profile, ev: Event) -> Any:
    return settle(p, ev, window_ms=WINDOW, marketing=_marketing)


def _marketing(item: Pending) -> bool:
    cat = default_catalogue()
    return is_marketing(item, cat.actions, cat)


def answers(p: Profile) -> list[int]:
    return [x.answer for x in p.pending]


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        ("clicked", CLICKED),
        ("converted", CLICKED),
        ("dismissed", REFUSED),
        ("bounced", REFUSED),
        ("unsubscribed", REFUSED),
        ("complained", REFUSED),
        ("delivered", OPEN),
        ("opened", OPEN),
    ],
)
def test_an_outcome_answers_its_decision_and_teaches_nothing_yet(kind: str, answer: int) -> None:
    p = Profile("c1", pending=(held("d1"), held("d2")))
    s = run(p, outcome(kind, "d2"))
    assert answers(s.profile) == [OPEN, answer] and s.leaving == ()
    assert s.profile.conversions == (answer == CLICKED)


def test_a_click_is_not_undone_by_a_later_dismissal_and_counts_one_conversion() -> None:
    p = Profile("c1", pending=(held("d1"),))
    for kind in ("clicked", "dismissed", "converted"):
        p = run(p, outcome(kind, "d1")).profile
    assert answers(p) == [CLICKED] and p.conversions == 1


def test_a_purchase_goes_to_the_clicked_decision_before_a_later_open_one() -> None:
    """Scenario: the customer clicked d1, then got d2, then ordered for 42. We expect d1
    credited with the order (its revenue), d2 still open, one conversion in all."""
    p = Profile("c1", pending=(held("d1"),))
    p = run(p, outcome("clicked", "d1")).profile
    p = Profile("c1", pending=(*p.pending, held("d2", at_ms=T + 120_000)), conversions=1)
    s = run(p, order(42.0))
    assert answers(s.profile) == [BOUGHT, OPEN] and s.revenue == 42.0
    assert s.profile.conversions == 1


def test_a_purchase_without_a_click_goes_to_the_latest_open_marketing_decision() -> None:
    p = Profile(
        "c1",
        pending=(
            held("d1"),
            held("d2", "product_recommendation:push", T + 1000),
            held("d3", "support_followup:agent", T + 2000),
        ),
    )
    s = run(p, order(10.0))
    assert answers(s.profile) == [OPEN, BOUGHT, OPEN] and s.revenue == 10.0
    assert s.profile.conversions == 1
    # A decision answered no is not credited; with none open, the order credits nothing.
    refused = Profile("c1", pending=(held("d1", "product_recommendation:push", T),))
    refused = run(refused, outcome("dismissed", "d1")).profile
    nothing = run(refused, order(10.0))
    assert answers(nothing.profile) == [REFUSED] and nothing.revenue == 0.0


def test_a_purchase_after_the_window_credits_nothing_and_expires_the_decision() -> None:
    s = run(Profile("c1", pending=(held("d1"),)), order(10.0, at_ms=T + WINDOW + 1))
    assert s.revenue == 0.0 and s.profile.pending == ()
    assert [(x.key, kind) for x, kind in s.leaving] == [(short_hash("d1"), "expired")]


def test_decisions_leave_when_their_window_passes_with_what_they_earned() -> None:
    p = Profile("c1", pending=(held("d1"), held("d2"), held("d3"), held("d4", at_ms=T + WINDOW)))
    p = run(p, outcome("clicked", "d1")).profile
    p = run(p, outcome("dismissed", "d2")).profile
    s = run(p, Event("web", "search", "e9", "c1", T + WINDOW + 1, {}))
    assert [kind for _, kind in s.leaving] == ["outcome", "outcome", "expired"]
    assert [x.key for x in s.profile.pending] == [short_hash("d4")]
    policy = LogisticHeads()
    lessons = teach(policy, s.leaving)
    assert [(x.kind, x.reward) for x in lessons] == [
        ("outcome", 1.0),
        ("outcome", 0.0),
        ("expired", 0.0),
    ]
    assert all(x.log_loss is not None for x in lessons) and policy.updates == 3


def test_an_outcome_after_the_window_is_late_and_teaches_only_the_expiry() -> None:
    s = run(Profile("c1", pending=(held("d1"),)), outcome("clicked", "d1", T + WINDOW + 1))
    assert s.late == 1 and s.profile.conversions == 0
    assert [kind for _, kind in s.leaving] == ["expired"]
    again = run(s.profile, outcome("converted", "d1", T + WINDOW + 2))
    assert again.late == 0 and again.leaving == ()


def test_a_timer_nudge_expires_decisions_on_its_own_time() -> None:
    p = Profile("c1", pending=(held("d1"), held("d2", at_ms=T + 10)))
    s = expire(p, T + WINDOW + 5, window_ms=WINDOW)
    assert [kind for _, kind in s.leaving] == ["expired"] and len(s.profile.pending) == 1
    assert expire(p, T + WINDOW, window_ms=WINDOW).profile is p


def test_a_decision_pushed_out_of_the_memory_teaches_what_it_earned_by_then() -> None:
    p = Profile("c1")
    for i in range(MAX_PENDING):
        p, gone = hold(p, held(f"d{i}"))
        assert gone == ()
    p = run(p, outcome("clicked", "d0")).profile
    p, gone = hold(p, held("d4"))
    p, gone2 = hold(p, held("d5"))
    assert [(x.key, kind) for x, kind in gone + gone2] == [
        (short_hash("d0"), "evicted"),
        (short_hash("d1"), "evicted"),
    ]
    assert [x.reward for x in teach(LogisticHeads(), gone + gone2)] == [1.0, 0.0]


def test_a_journey_decision_is_credited_but_teaches_nothing() -> None:
    act = "cart_recovery:0:remind:1:2"
    journey = Pending(short_hash("j1"), "cart_reminder:email", (), None, False, "m", T, act=act)
    assert _marketing(journey)
    s = run(Profile("c1", pending=(journey,)), order(5.0))
    assert answers(s.profile) == [BOUGHT] and s.revenue == 5.0
    [taught] = teach(LogisticHeads(), ((s.profile.pending[0], "expired"),))
    assert taught.reward == 1.0 and taught.log_loss is None
