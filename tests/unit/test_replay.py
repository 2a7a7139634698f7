"""Joining logged decisions to outcomes, the candidate policies, and the commands' flags."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from engine.cli import main
from engine.decide import DecideConfig, decide
from engine.journey_loader import default_catalogue
from engine.profile import Profile
from engine.replay import Attribution
from models.evaluate import NONE, Logged
from models.policy import LogisticHeads
from models.targets import greedy, load_snapshot, ranked_by, uniform
from topics.decisions import Candidate, Decision
from topics.events import Event

NOW = 1_800_028_800_000  # 16:00 UTC: the hours before it are out of quiet hours
HOUR = 3_600_000
CAT = default_catalogue()


def decision(did: str, at: int = NOW - 2 * HOUR, **changes: object) -> Decision:
    d = Decision(
        decision_id=did,
        customer_id="c1",
        event_id="e-" + did,
        event_source="web",
        event_type="search",
        event_time_ms=at,
        action="discount_offer",
        channel="sms",
        action_class="marketing",
        score=0.4,
        explored=False,
        reasons=("eligible 2 of 3", "highest priority"),
        model_version="logistic-heads/9",
        candidates=(
            Candidate("discount_offer", "sms", True, None, 0.4, 0.4),
            Candidate("discount_offer", "email", False, "no_consent"),
            Candidate("product_recommendation", "push", True, None, 0.3, 0.3),
        ),
        features={"x": 1.0},
        decided_at_ms=at,
        propensity=0.95,
    )
    return replace(d, **changes)  # type: ignore[arg-type]


def outcome(did: str, etype: str, at: int) -> Event:
    return Event("outcome", etype, f"o-{did}-{etype}", "c1", at, {"decision_id": did})


def test_rewards_come_from_clicks_and_conversions_within_the_window() -> None:
    a = Attribution(window_ms=HOUR, now_ms=NOW)
    for did in ("d-click", "d-convert", "d-late", "d-dismiss", "d-quiet"):
        a.add_decision(decision(did))
    a.add_decision(decision("d-quiet2", action="none", channel=None, propensity=0.05))
    at = NOW - 2 * HOUR
    a.add_outcome(outcome("d-click", "clicked", at + 1000))
    a.add_outcome(outcome("d-convert", "delivered", at + 10))
    a.add_outcome(outcome("d-convert", "converted", at + HOUR))  # the window's last instant
    a.add_outcome(outcome("d-convert", "clicked", at + HOUR))  # one reward per decision
    a.add_outcome(outcome("d-late", "converted", at + HOUR + 1))
    a.add_outcome(outcome("d-dismiss", "dismissed", at + 1000))
    a.add_outcome(outcome("d-unknown", "converted", at + 1000))
    rewards = {did: d.reward for did, d in a.by_id().items()}
    assert rewards == {
        "d-click": 1.0,
        "d-convert": 1.0,
        "d-late": 0.0,
        "d-dismiss": 0.0,
        "d-quiet": 0.0,
        "d-quiet2": 0.0,
    }
    assert (a.tally.attributed, a.tally.too_late, a.tally.evaluated) == (2, 1, 6)
    quiet = a.by_id()["d-quiet2"]
    assert (quiet.action, quiet.arms) == (
        NONE,
        ("discount_offer:sms", "product_recommendation:push"),
    )
    assert quiet.scores == {"discount_offer:sms": 0.4, "product_recommendation:push": 0.3}


def test_what_is_skipped_is_counted_by_reason() -> None:
    a = Attribution(window_ms=HOUR, now_ms=NOW, since_ms=NOW - 10 * HOUR, until_ms=NOW)
    a.add_decision(decision("d-ok"))
    a.add_decision(decision("d-ok"))  # the same id again: a re-send
    a.add_decision(decision("d-journey", journey="cart_recovery"))
    a.add_decision(decision("d-holdout", holdout=True))
    a.add_decision(decision("d-resent", propensity=None, candidates=()))
    reasons = (*decision("x").reasons, "held back: a journey acted on this event")
    a.add_decision(decision("d-held", action="none", channel=None, reasons=reasons))
    a.add_decision(decision("d-open", at=NOW - HOUR // 2))
    a.add_decision(decision("d-odd", action="cart_reminder", channel="email"))
    a.add_decision(decision("d-old", at=NOW - 11 * HOUR))  # before --since: not counted
    a.add_decision(decision("d-future", at=NOW))  # at --until: not counted
    assert a.tally.decisions == 8 and a.tally.evaluated == 1
    assert dict(a.tally.skipped) == {
        "duplicate decision id (re-sent or replayed)": 1,
        "journey decision": 1,
        "holdout": 1,
        "no propensity recorded": 1,
        "held back after the draw": 1,
        "attribution window still open": 1,
        "logged action not among the arms it was drawn from": 1,
    }
    assert list(a.by_id()) == ["d-ok"]


def test_service_actions_are_the_arms_when_eligible_as_the_engine_puts_them_first() -> None:
    p = Profile("c1", open_tickets={"t1": "normal"})
    ev = Event("support", "ticket_opened", "e1", "c1", NOW, {})
    d = decide(p, ev, LogisticHeads(), DecideConfig(), CAT, now_ms=NOW - 2 * HOUR)
    a = Attribution(window_ms=HOUR, now_ms=NOW)
    a.add_decision(d)
    (logged,) = a.logs()
    assert logged.arms == ("support_followup:agent",) and logged.propensity == 1.0


def test_greedy_target_takes_what_decide_takes_without_exploration() -> None:
    model = trained_model()
    a = Attribution(window_ms=1, now_ms=NOW)
    chosen = {}
    for i in range(40):
        p = Profile("c1", cart={"p1": 5.0} if i % 2 else {}, counts={"web.search": i % 5})
        ev = Event("web", "product_view", f"e{i}", "c1", NOW - HOUR, {})
        d = decide(p, ev, model, DecideConfig(exploration_rate=0.0), CAT, now_ms=NOW - HOUR)
        a.add_decision(d)
        chosen[d.decision_id] = f"{d.action}:{d.channel}"
    target = greedy()
    assert {did: dict(target(x)) for did, x in a.by_id().items()} == {
        did: {arm: 1.0} for did, arm in chosen.items()
    }
    assert len(set(chosen.values())) > 1  # the model does tell the contexts apart


def test_a_pickled_snapshot_ranks_by_its_score_times_value(tmp_path: Path) -> None:
    model = trained_model()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    loaded = load_snapshot(path)
    arms = ("discount_offer:sms", "product_recommendation:push")
    d = Logged(arms, "discount_offer:sms", 0.95, 0.0, features={"log_web_events": 1.0})
    scores = model.score_many(dict(d.features), list(arms))
    best = max(arms, key=lambda arm: scores[arm])
    assert ranked_by(loaded, {})(d) == {best: 1.0}
    # A large enough value on the other action turns the ranking around.
    other = next(arm for arm in arms if arm != best)
    boost = 2 * scores[best] / scores[other]
    assert ranked_by(loaded, {other.split(":")[0]: boost})(d) == {other: 1.0}
    assert ranked_by(loaded, {}, min_score=1.0)(d) == {NONE: 1.0}
    assert uniform(d) == {arm: 0.5 for arm in arms}


def test_a_file_that_is_no_policy_snapshot_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read snapshot"):
        load_snapshot(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a pickled model snapshot"):
        load_snapshot(tmp_path / "junk.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="holds a dict, not a policy"):
        load_snapshot(tmp_path / "dict.pkl")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--policy", "best"], "--policy 'best': give greedy, random or snapshot:PATH"),
        (["evaluate", "--policy", "snapshot:"], "give greedy, random or snapshot:PATH"),
        (["evaluate", "--policy", "snapshot:/nonexistent.pkl"], "cannot read snapshot"),
        (["evaluate", "--since", "yesterday"], "'yesterday' is not a time"),
        (["evaluate", "--since", "1h", "--until", "2h"], "--until must be later than --since"),
        (["evaluate", "--attribution-window", "0"], "--attribution-window '0': give a positive"),
        (["evaluate", "--attribution-window", "soon"], "--attribution-window 'soon'"),
        (["evaluate", "--level", "95"], "--level must be between 0 and 1"),
        (["explain", "c1", "--limit", "0"], "--limit must be at least 1"),
        (["explain", "c1", "--since", "1700000000"], "looks like epoch seconds"),
    ],
)
def test_bad_flags_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("segue: ") and message in err and err.count("\n") == 1


def trained_model() -> LogisticHeads:
    """A model that prefers discounts for searchers and recommendations for the rest."""
    model = LogisticHeads(learning_rate=0.2)
    for i in range(300):
        searcher = i % 2 == 0
        x = {"log_web_events": 1.0 + i % 3, "search_share": 1.0 if searcher else 0.0}
        model.learn_one(x, "discount_offer:sms", 1.0 if searcher else 0.0)
        model.learn_one(x, "product_recommendation:push", 0.0 if searcher else 1.0)
    return model
