"""The contact policy where decisions are made: journeys and next-best-action share one
profile, so caps, gaps and quiet hours hold across them (engine/orchestrate.py,
engine/decide.py). Time is the events' and the nudges' own: a controlled clock."""

from __future__ import annotations

from engine.decide import DecideConfig, in_holdout
from engine.journey_loader import load_catalogue
from engine.profile import Profile
from tests.unit.test_pipeline import NOW, Harness, event

HOUR = 3_600_000

TWO_JOURNEYS = """\
catalogue: compete
version: 1
journeys:
  - id: first
    class: marketing
    priority: 20
    entry: {{event: web.add_to_cart}}
    steps:
      - {{id: say, act: {{action: cart_reminder, channels: [email]}}}}
  - id: second
    class: marketing
    priority: 10
    entry: {{event: web.add_to_cart}}
    steps:
      - {{id: say, act: {{action: discount_offer, channels: {second}}}}}
contact_policy:
  min_gap: 1s
  total: {{day: {total}, week: 10}}
"""


def test_two_journeys_on_one_event_cannot_both_take_the_last_email_slot() -> None:
    """Scenario: two journeys act on the same add-to-cart, both on email, whose day cap
    is one. We expect the higher-priority journey to send and the other's decision to
    say it was refused by the channel's day cap, with nothing sent for it."""
    cat = load_catalogue(TWO_JOURNEYS.format(second="[email]", total=3))
    h = Harness(catalogue=cat)
    result = h.send("web", event("add_to_cart", "e1", product_id="p1", price=20.0))
    first, second = result.journey_decisions
    assert (first.journey, first.action, first.channel) == ("first", "cart_reminder", "email")
    assert (second.journey, second.action) == ("second", "none")
    assert [c.excluded_by for c in second.candidates] == ["cap_channel_day"]
    assert [s.topic for s in result.sends].count("cx.decisions.email") == 1
    assert h.profiles["c1"].contacts == {"email": ((NOW) // 1000,)}


def test_the_last_slot_across_channels_goes_to_the_first_journey_only() -> None:
    """Scenario: the second journey would use sms, but the total day cap (2) has one
    slot left when the events arrive, and the first journey takes it."""
    cat = load_catalogue(TWO_JOURNEYS.format(second="[sms]", total=2))
    h = Harness(catalogue=cat)
    h.profiles["c1"] = Profile("c1", contacts={"push": (NOW // 1000 - 3 * 3600,)})
    result = h.send("web", event("add_to_cart", "e1", product_id="p1", price=20.0))
    first, second = result.journey_decisions
    assert first.channel == "email" and second.action == "none"
    assert [c.excluded_by for c in second.candidates] == ["cap_total_day"]
    # Next-best-action decides the same event after both: no slot is left for it either.
    assert result.decision is not None and not result.decision.acts
    marketing = [c for c in result.decision.candidates if c.action != "support_followup"]
    assert {c.excluded_by for c in marketing} <= {
        "cap_total_day",
        "cap_channel_day",
        "cart_not_empty",
    }


def test_next_best_action_respects_the_cap_its_own_earlier_decisions_used() -> None:
    h = Harness()
    decisions = []
    for i in range(6):  # two hours apart: the gap never refuses, only the caps do
        at = NOW - (10 - 2 * i) * HOUR  # 06:00 to 16:00 UTC, one local day
        d = h.send("web", event("product_view", f"e{i}", product_id="p1", time=at)).decision
        assert d is not None
        decisions.append(d)
    acted = [d for d in decisions if d.acts]
    assert len(acted) == 3  # the total day cap
    assert sum(len(times) for times in h.profiles["c1"].contacts.values()) == 3
    for d in decisions[decisions.index(acted[-1]) + 1 :]:
        assert {c.excluded_by for c in d.candidates} <= {
            "cap_total_day",
            "cap_channel_day",
            "cart_not_empty",
            "open_ticket",
        }


DEFERRING = """\
catalogue: night
version: 1
journeys:
  - id: nudge
    class: marketing
    priority: 10
    entry: {event: web.add_to_cart}
    exit:
      - event: purchase.order_placed
    steps:
      - {id: say, act: {action: cart_reminder, channels: [email]}}
      - {id: linger, wait: 30d}
"""


def tokyo() -> Harness:
    h = Harness(catalogue=load_catalogue(DEFERRING))
    h.profiles["c1"] = Profile("c1", timezone="Asia/Tokyo")
    return h


def test_a_journey_act_in_quiet_hours_is_deferred_to_the_local_morning() -> None:
    """Scenario: a Tokyo customer adds to cart at 23:00 their time. We expect the email to
    be deferred, logged as such, a timer set for 08:00 Tokyo, and the email sent under
    the same decision id when that timer fires."""
    h = tokyo()
    late = NOW - 2 * HOUR  # 14:00 UTC = 23:00 in Tokyo
    result = h.send("web", event("add_to_cart", "e1", product_id="p1", price=20.0, time=late))
    [deferred] = result.journey_decisions
    morning = NOW + 7 * HOUR  # 23:00 UTC = 08:00 in Tokyo
    assert deferred.action == "none" and deferred.reasons[-1].startswith("deferred")
    assert [c.excluded_by for c in deferred.candidates] == ["quiet_hours"]
    assert h.timers == {"c1": morning}
    assert h.tick(morning - 1).status == "stale"
    fired = h.tick(morning)
    [sent] = fired.journey_decisions
    assert (sent.action, sent.channel, sent.event_time_ms) == ("cart_reminder", "email", morning)
    assert sent.decision_id == deferred.decision_id
    assert sorted(s.topic for s in fired.sends) == ["cx.decisions.email", "cx.decisions.log"]
    assert h.profiles["c1"].deferred == {}
    assert h.timers == {"c1": late + 30 * 24 * HOUR}  # the journey's own wait again


def test_a_deferred_act_is_dropped_when_its_journey_ended_in_the_night() -> None:
    h = tokyo()
    late = NOW - 2 * HOUR
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=20.0))
    h.send("web", event("add_to_cart", "e2", product_id="p2", price=20.0, time=late))
    h.send("purchase", event("order_placed", "o1", order_id="o1", amount=40.0))
    assert h.tick(NOW + 7 * HOUR).journey_decisions == []


def test_push_in_quiet_hours_goes_to_inapp_for_a_journey() -> None:
    text = DEFERRING.replace("channels: [email]", "channels: [push]")
    text = text.replace("action: cart_reminder", "action: product_recommendation")
    h = Harness(catalogue=load_catalogue(text))
    h.profiles["c1"] = Profile("c1", timezone="Asia/Tokyo")
    result = h.send("web", event("add_to_cart", "e1", product_id="p1", price=20.0))
    [moved] = result.journey_decisions
    assert (moved.action, moved.channel) == ("product_recommendation", "inapp")


def test_next_best_action_in_quiet_hours_weighs_only_channels_open_at_night() -> None:
    h = Harness()
    h.profiles["c1"] = Profile("c1", timezone="Asia/Tokyo")
    d = h.send("web", event("product_view", "e1", product_id="p1")).decision
    assert d is not None and d.channel == "inapp"
    why = {(c.action, c.channel): c.excluded_by for c in d.candidates}
    assert why[("discount_offer", "email")] == "quiet_hours"
    assert why[("product_recommendation", "push")] == "quiet_hours"
    assert why[("product_recommendation", "inapp")] is None


def test_two_dismissals_suppress_the_action_for_next_best_action() -> None:
    h = Harness(cfg=DecideConfig(exploration_rate=0.0))
    week = 7 * 24 * HOUR
    h.profiles["c1"] = Profile(
        "c1", dismissals={"product_recommendation": ((NOW - week) // 1000, week // 2000)}
    )
    d = h.send("web", event("product_view", "e1", product_id="p1")).decision
    assert d is not None
    suppressed = [c for c in d.candidates if c.action == "product_recommendation"]
    assert {c.excluded_by for c in suppressed} == {"suppressed_outcome"}


def test_holdout_customers_get_service_but_no_marketing() -> None:
    cfg = DecideConfig(exploration_rate=0.0, holdout_share=0.5)
    held = next(f"h{i}" for i in range(100) if in_holdout(f"h{i}", cfg))
    h = Harness(cfg=cfg)
    browse = event("product_view", "e1", customer_id=held, product_id="p1")
    view = h.send("web", browse, key=held.encode())
    assert view.decision is not None and view.decision.holdout and not view.decision.acts
    marketing = {c.excluded_by for c in view.decision.candidates if c.action != "support_followup"}
    assert marketing == {"holdout"}
    ticket = h.send(
        "support",
        event("ticket_opened", "s1", customer_id=held, ticket_id="t1", time=NOW + 1000),
        key=held.encode(),
    )
    assert ticket.decision is not None and ticket.decision.action == "support_followup"
    assert ticket.group == "holdout"


def test_levers_reorder_actions_of_equal_propensity() -> None:
    text = TWO_JOURNEYS.format(second="[email]", total=3) + (
        "levers:\n  channels: {sms: 2.0}\n  actions: {product_recommendation: 0.1}\n"
    )
    h = Harness(catalogue=load_catalogue(text))
    d = h.send("web", event("product_view", "e1", product_id="p1")).decision
    assert d is not None and (d.action, d.channel) == ("discount_offer", "sms")
    by_arm = {(c.action, c.channel): c for c in d.candidates}
    assert by_arm[("discount_offer", "sms")].priority == 1.0  # 0.5 x value 1 x weight 2
    assert by_arm[("product_recommendation", "inapp")].priority == 0.05
    assert d.propensity == 1.0  # no exploration: the greedy choice is certain


def test_dismissals_reported_on_the_outcome_topic_suppress_the_action() -> None:
    """Scenario: a customer dismisses the same next-best-action offer twice, a day apart.
    We expect the profile to remember both dismissals of that action, and the next
    decision to exclude the action on every channel as suppressed_outcome."""
    h = Harness()
    day = 24 * HOUR
    offered = []
    for i, at in enumerate((NOW - 2 * day, NOW - day)):
        d = h.send("web", event("product_view", f"v{i}", product_id="p1", time=at)).decision
        assert d is not None and d.acts
        offered.append(d.action)
        outcome = event("dismissed", f"o{i}", decision_id=d.decision_id, time=at + 60_000)
        h.send("outcome", outcome)
    assert offered[0] == offered[1]
    assert len(h.profiles["c1"].dismissals[offered[0]]) == 2
    d = h.send("web", event("product_view", "v9", product_id="p1")).decision
    assert d is not None and d.action != offered[0]
    reasons = {c.excluded_by for c in d.candidates if c.action == offered[0]}
    assert reasons == {"suppressed_outcome"}
