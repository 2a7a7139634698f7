"""Eligibility, arbitration and determinism of the decide step, without Kafka."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from engine import contact_check
from engine.decide import DecideConfig, decide
from engine.frozen import is_assembled
from engine.journey_loader import default_catalogue
from engine.journeys import Catalogue, stage_of
from engine.orchestrate import event_doc
from engine.profile import Profile
from engine.profile_view import view
from models.policy import LogisticHeads
from topics import decisions
from topics.decisions import decision_id
from topics.events import Event

NOW = 1_800_000_000_000
CAT = default_catalogue()


def ev(etype: str = "product_view", source: str = "web", eid: str = "e1") -> Event:
    return Event(source, etype, eid, "c1", NOW, {})


def test_open_ticket_excludes_every_marketing_action() -> None:
    p = Profile("c1", open_tickets={"t1": "normal"})
    d = decide(p, ev(), LogisticHeads(), DecideConfig(exploration_rate=0.0), CAT, now_ms=NOW)
    assert d.action == "none" and d.channel is None
    marketing = [c for c in d.candidates if c.action != "support_followup"]
    assert marketing and all(c.excluded_by == "open_support_ticket" for c in marketing)


def test_service_action_comes_first_on_a_support_event() -> None:
    p = Profile("c1", open_tickets={"t1": "normal"})
    d = decide(p, ev("ticket_opened", "support"), LogisticHeads(), DecideConfig(), CAT, now_ms=NOW)
    assert (d.action, d.channel, d.action_class) == ("support_followup", "agent", "service")
    assert not d.explored


def test_resolved_ticket_lets_marketing_back_in() -> None:
    d = decide(Profile("c1"), ev(), LogisticHeads(), DecideConfig(0.0), CAT, now_ms=NOW)
    assert d.action_class == "marketing"


def test_consent_and_action_conditions_are_named_in_the_candidates() -> None:
    p = Profile("c1", opted_out=("email",))
    d = decide(p, ev(), LogisticHeads(), DecideConfig(0.0), CAT, now_ms=NOW)
    why = {(c.action, c.channel): c.excluded_by for c in d.candidates}
    assert why[("discount_offer", "email")] == "no_consent"
    assert why[("cart_reminder", "push")] == "cart_not_empty"
    assert why[("discount_offer", "sms")] is None
    assert d.channel != "email"


def test_model_preference_wins_without_exploration() -> None:
    policy = LogisticHeads(learning_rate=0.2)
    p = Profile("c1")
    x = decide(p, ev(), policy, DecideConfig(0.0), CAT, now_ms=NOW).features
    for _ in range(300):
        policy.learn_one(x, "discount_offer:sms", 1.0)
        policy.learn_one(x, "product_recommendation:push", 0.0)
    d = decide(p, ev(eid="e2"), policy, DecideConfig(0.0), CAT, now_ms=NOW)
    assert (d.action, d.channel) == ("discount_offer", "sms")
    assert d.model_version == "logistic-heads/600"


def test_same_event_makes_the_same_decision_and_id() -> None:
    cfg = DecideConfig(exploration_rate=0.5)
    seen = set()
    for _ in range(3):
        d = decide(Profile("c1"), ev(eid="e7"), LogisticHeads(), cfg, CAT, now_ms=NOW)
        seen.add((d.decision_id, d.action, d.channel, d.explored))
    assert len(seen) == 1
    assert next(iter(seen))[0] == decision_id("c1", "web", "e7", "nba")


def test_exploration_rate_is_honoured_across_decision_ids() -> None:
    cfg = DecideConfig(exploration_rate=0.3)
    explored = sum(
        decide(Profile("c1"), ev(eid=f"e{i}"), LogisticHeads(), cfg, CAT, now_ms=NOW).explored
        for i in range(2000)
    )
    assert 500 < explored < 700


def test_min_score_keeps_quiet() -> None:
    cfg = replace(DecideConfig(0.0), min_score=0.9)
    d = decide(Profile("c1"), ev(), LogisticHeads(), cfg, CAT, now_ms=NOW)
    assert d.action == "none"
    assert any("below min_score" in r for r in d.reasons)


def test_the_logged_propensity_is_the_probability_of_the_choice() -> None:
    """The propensity off-policy evaluation divides by: over many decision ids, each arm
    is chosen as often as the propensity logged with it says."""
    cfg = DecideConfig(exploration_rate=0.4)
    counts: dict[str, int] = {}
    logged: dict[str, float] = {}
    n = 4000
    for i in range(n):
        d = decide(Profile("c1"), ev(eid=f"e{i}"), LogisticHeads(), cfg, CAT, now_ms=NOW)
        arm = f"{d.action}:{d.channel}"
        counts[arm] = counts.get(arm, 0) + 1
        assert d.propensity is not None
        assert logged.setdefault(arm, d.propensity) == d.propensity  # one value per arm
    eligible = sum(c.eligible for c in d.candidates)
    assert sum(logged.values()) == pytest.approx(1.0) and len(logged) == eligible
    for arm, p in logged.items():
        assert abs(counts[arm] / n - p) < 4 * (p * (1 - p) / n) ** 0.5, arm


def test_a_view_given_by_the_caller_decides_as_one_worked_out_here() -> None:
    """Scenario: the pipeline passes the view it worked out for the journeys.
    We expect the very decision ``decide`` makes when it works the view out itself."""
    cat = default_catalogue()
    p = Profile("c1", cart={"p1": 30.0}, counts={"web.product_view": 4}, timezone="UTC")
    ev = Event("web", "add_to_cart", "e1", "c1", NOW, {"product_id": "p1", "price": 30.0})
    own = decide(p, ev, LogisticHeads(), DecideConfig(), cat, now_ms=NOW)
    given = decide(
        p, ev, LogisticHeads(), DecideConfig(), cat, now_ms=NOW, profile_view=view(p, NOW)
    )
    assert given == own and own.candidates and own.stage == "purchase"


@pytest.mark.parametrize(
    "profile",
    [Profile("c1"), Profile("c1", open_tickets={"t1": "normal"}, opted_out=("sms", "push"))],
    ids=["acting", "every-candidate-excluded"],
)
def test_a_decision_encodes_as_the_dataclass_constructor_would_build_it(profile: Profile) -> None:
    """Scenario: ``decide`` assembles its Decision and Candidates without ``__init__``.
    We expect every field in field order, so the bytes on the wire are those of
    ``Decision(**fields)`` (orjson writes the instance dict in its order)."""
    d = decide(profile, ev(), LogisticHeads(), DecideConfig(0.0), CAT, now_ms=NOW)
    assert is_assembled(d) and all(is_assembled(c) for c in d.candidates)
    rebuilt = replace(d, candidates=tuple(replace(c) for c in d.candidates))
    assert rebuilt == d and rebuilt.encode() == d.encode()
    assert (d.action == "none") == (profile.open_tickets != {})


def _rules_written_out(
    p: Profile, event: Event, cat: Catalogue, holdout: bool
) -> tuple[str | None, list[tuple[str, str, str | None]]]:
    """The stage and each arm's reason as step 2 of ``engine.decide`` states them, one arm
    at a time: what ``decide``'s inline loop over its plan must match."""
    now = NOW
    profile = view(p, now)
    stage = stage_of(cat, profile, now) if cat.lifecycle else None
    ctx = {"profile": profile, "event": event_doc(event), "now": now}
    moment = contact_check.Moment(cat.contact, p, now)
    whys = []
    for a in cat.actions:
        for channel in a.channels if a.next_best_action else ():
            marketing = a.action_class == "marketing"
            if marketing and holdout:
                why = "holdout"
            elif a.stages and stage not in a.stages:
                why = "stage"
            elif marketing and p.open_tickets:
                why = "open_support_ticket"
            else:
                why = a.failed(ctx) or moment.refusal(a.action_id, a.action_class, channel)
            whys.append((a.action_id, channel, why))
    return stage, whys


@pytest.mark.parametrize("holdout", [False, True])
def test_the_plan_excludes_as_the_rules_written_out_do(holdout: bool) -> None:
    """Scenario: ``decide`` runs the stage, the actions' rules and the contact policy from
    a plan worked out once per catalogue. We expect, for customers at every stage, with
    and without tickets, carts and consent, the stage and reasons of the rules applied one
    arm at a time, in the order the module docstring gives."""
    by_stage = {"discount_offer": ("purchase", "retention"), "cart_reminder": ("purchase",)}
    cat = replace(
        CAT,
        actions=tuple(replace(a, stages=by_stage.get(a.action_id, ())) for a in CAT.actions),
    )
    profiles = [
        Profile("c1"),
        Profile("c1", cart={"p1": 9.0}),
        Profile("c1", orders=2, cart={"p1": 9.0}),
        Profile("c1", orders=7, opted_out=("email",)),
        Profile("c1", counts={"web.product_view": 5}, open_tickets={"t1": "normal"}),
        Profile("c1", cart={"p1": 9.0}, open_tickets={"t1": "normal"}, opted_out=("push",)),
    ]
    stages = set()
    for p in profiles:
        for e in (ev(), ev("ticket_opened", "support")):  # ``event`` read or not
            d = decide(p, e, LogisticHeads(), DecideConfig(0.0), cat, now_ms=NOW, holdout=holdout)
            stage, whys = _rules_written_out(p, e, cat, holdout)
            stages.add(stage)
            assert d.stage == stage
            assert [(c.action, c.channel, c.excluded_by) for c in d.candidates] == whys
            assert (d.action == "support_followup") == (
                e.source == "support" and bool(p.open_tickets)
            )
    assert stages == {"awareness", "purchase", "retention", "advocacy", "consideration"}


def test_decisions_sharing_kept_candidates_encode_as_written_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario: decisions that exclude every candidate share a tuple whose JSON is kept,
    and the keeping forgets everything past a bound (here 2 tuples). We expect the bytes
    orjson writes for the whole decision, kept, forgotten or never kept."""
    monkeypatch.setattr(decisions, "_MOST_KEPT", 2)
    monkeypatch.setattr(decisions, "_KEPT", {})
    cat = replace(CAT)  # a catalogue of its own: a plan without tuples made before
    ticket = Profile("c1", open_tickets={"t1": "normal"})
    cases = [  # four combinations of reasons, every candidate excluded
        (ticket, ev(), False),
        (ticket, ev(), True),
        (Profile("c1"), ev(), True),
        (replace(ticket, opted_out=("agent",)), ev("ticket_opened", "support"), False),
    ]
    kept = 0
    for i, (p, e, holdout) in enumerate(cases * 3):
        e = replace(e, event_id=f"e{i}")
        d = decide(p, e, LogisticHeads(), DecideConfig(), cat, now_ms=NOW, holdout=holdout)
        assert d.action == "none" and d.encode() == orjson.dumps(d)
        kept += id(d.candidates) in decisions._KEPT
    assert kept == 8 and len(decisions._KEPT) == 2  # 4 made, then 2 forgotten and 2 kept
