"""Journeys inside the record-level core: entries from events, timers fired by nudges,
acts turned into decisions on channel topics, all with a controlled clock."""

from __future__ import annotations

import textwrap

import orjson

from engine.journey_loader import load_catalogue
from engine.journey_runtime import Exited
from engine.pending import RESENT, TIMER_SOURCE
from tests.unit.test_pipeline import NOW, Harness, event

MIN = 60_000
HOUR = 60 * MIN


def decisions(result: object, topic: str) -> list[dict[str, object]]:
    sends = getattr(result, "sends", [])
    return [orjson.loads(s.value) for s in sends if s.topic == topic]


def test_cart_recovery_sets_a_timer_and_the_nudge_at_the_hour_sends_one_reminder() -> None:
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=25.0))
    assert h.timers == {"c1": NOW + HOUR}
    early = h.tick(NOW + 59 * MIN)
    assert early.status == "stale" and early.sends == []
    due = h.tick(NOW + HOUR)
    assert due.status == "timer"
    [sent] = decisions(due, "cx.decisions.email")
    assert sent["action"] == "cart_reminder" and sent["journey"] == "cart_recovery"
    assert sent["event_source"] == TIMER_SOURCE and sent["event_time_ms"] == NOW + HOUR
    assert sent["catalogue_version"] == "default@3"
    assert sent["stage"] == "purchase"  # a cart and no order yet, by the lifecycle rules
    assert decisions(due, "cx.decisions.log") == [sent]
    assert h.timers == {"c1": NOW + HOUR + 30 * MIN}  # the next wait of the journey
    again = h.tick(NOW + HOUR)  # a second nudge for the same time: nothing is due
    assert again.status == "stale" and again.sends == []


def test_an_order_within_the_hour_exits_and_clears_the_timer() -> None:
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=25.0))
    h.send("purchase", event("order_placed", "o1", order_id="o1", amount=25.0))
    # The order enters cross_sell and win_back, whose waits are days away.
    assert h.timers["c1"] > NOW + 24 * HOUR
    assert h.tick(NOW + HOUR).sends == []


def test_a_replayed_nudge_sends_the_same_decision_again() -> None:
    """Scenario: the worker applied a nudge, then crashed before its sends were flushed,
    so the nudge record is read again. We expect the same decision, same id, re-sent,
    and the journey not moved twice."""
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=25.0))
    h.offset = 41
    first = h.tick(NOW + HOUR)
    h.offset = 41
    replay = h.tick(NOW + HOUR)
    assert replay.status == "replayed"
    assert [(s.topic, s.key) for s in replay.sends] == [(s.topic, s.key) for s in first.sends]
    explanation = ("candidates", "reasons", "propensity")
    for again, sent in zip(replay.sends, first.sends, strict=True):
        resent, original = orjson.loads(again.value or b""), orjson.loads(sent.value or b"")
        assert resent["reasons"] == [RESENT]  # the explanation is not kept (engine/pending.py)
        assert {k: v for k, v in resent.items() if k not in explanation} == {
            k: v for k, v in original.items() if k not in explanation
        }
    assert h.timers == {"c1": NOW + HOUR + 30 * MIN}


def test_no_consent_on_the_first_channel_takes_the_next() -> None:
    h = Harness()
    h.send("consent", event("opt_out", "x1", channel="email"))
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=25.0))
    [sent] = decisions(h.tick(NOW + HOUR), "cx.decisions.push")
    assert sent["channel"] == "push"
    assert sent["candidates"][0]["excluded_by"] == "no_consent"


def test_erasure_forgets_the_timer() -> None:
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=25.0))
    h.send("consent", event("erasure_requested", "x1"))
    assert h.timers == {}
    assert h.tick(NOW + HOUR).status == "stale"


def test_a_poor_csat_sends_a_person_through_the_agent_channel() -> None:
    h = Harness()
    result = h.send("support", event("csat_submitted", "s1", score=1))
    [followup] = decisions(result, "cx.decisions.agent")
    assert followup["action"] == "support_followup" and followup["action_class"] == "service"
    [offer] = decisions(h.tick(NOW + HOUR), "cx.decisions.email")
    assert offer["action"] == "recovery_offer" and offer["journey"] == "support_recovery"


IMMEDIATE = textwrap.dedent(
    """\
    catalogue: test
    version: {version}
    journeys:
      - id: browse_nudge
        class: marketing
        priority: 10
        entry: {{event: web.product_view}}
        steps:
          - id: {step}
            act: {{action: product_recommendation, channels: [inapp]}}
          - id: {wait}
            wait: 1h
    """
)


def test_when_a_journey_acts_next_best_action_stays_quiet_by_the_minimum_gap() -> None:
    """One message per moment: the journey's contact is in the profile before
    next-best-action weighs the same event, and the contact policy's gap refuses the rest."""
    h = Harness(catalogue=load_catalogue(IMMEDIATE.format(version=1, step="nudge", wait="rest")))
    result = h.send("web", event("product_view", "v1", product_id="p1", category="shoes"))
    assert [d.action for d in result.journey_decisions] == ["product_recommendation"]
    assert result.decision is not None and not result.decision.acts
    reasons = {c.excluded_by for c in result.decision.candidates}
    assert reasons <= {"min_gap", "cap_channel_day", "cart_not_empty", "open_ticket"}
    assert "min_gap" in reasons


def test_a_new_catalogue_version_is_recorded_and_withdraws_removed_steps() -> None:
    h = Harness(catalogue=load_catalogue(IMMEDIATE.format(version=1, step="nudge", wait="rest")))
    first = h.send("web", event("product_view", "v1", product_id="p1", category="shoes"))
    assert first.journey_decisions[0].catalogue_version == "test@1"
    h.catalogue = load_catalogue(IMMEDIATE.format(version=2, step="nudge", wait="pause"))
    result = h.send("web", event("product_view", "v2", product_id="p1", category="shoes"))
    # The membership waited at "rest", which v2 no longer has: it is withdrawn, so the
    # customer may enter v2's journey at once (if_not_active).
    assert Exited("browse_nudge", "withdrawn") in result.commands
    [sent] = result.journey_decisions
    assert sent.catalogue_version == "test@2"
    assert sent.decision_id != first.journey_decisions[0].decision_id


def test_a_big_basket_stalled_at_checkout_goes_to_sales_on_the_agent_channel() -> None:
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="tv", price=899.0))
    h.send("web", event("checkout_started", "e2"))
    result = h.tick(NOW + 2 * HOUR)
    [call] = decisions(result, "cx.decisions.agent")
    assert call["action"] == "sales_followup" and call["journey"] == "sales_assist"
    # Cart recovery's reminder (+1h) and discount (+1h30) were due too: one catch-up. The
    # contact policy lets the reminder out and refuses the discount: the reminder took
    # the day's one email, half an hour before it.
    emails = decisions(result, "cx.decisions.email")
    assert [d["action"] for d in emails] == ["cart_reminder"]
    [refused] = [d for d in decisions(result, "cx.decisions.log") if d["action"] == "none"]
    assert refused["journey"] == "cart_recovery" and refused["event_time_ms"] == NOW + 90 * MIN
    assert refused["candidates"] == [
        {
            "action": "discount_offer",
            "channel": "email",
            "eligible": False,
            "excluded_by": "cap_channel_day",
            "score": None,
            "priority": None,
        }
    ]


def test_next_best_action_decisions_record_the_catalogue_and_the_stage() -> None:
    h = Harness()
    result = h.send("purchase", event("order_placed", "o1", order_id="o1", amount=25.0))
    assert result.decision is not None
    assert result.decision.catalogue_version == "default@3"
    assert result.decision.stage == "retention"  # one order
