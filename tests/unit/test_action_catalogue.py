"""The actions, levers and contact_policy sections of a catalogue: data, checked whole."""

from __future__ import annotations

import pickle
from datetime import time

import pytest

from engine.contact_policy import DEFAULT_POLICY, Cap
from engine.journey_loader import default_catalogue, load_catalogue
from engine.journeys import CatalogueError

HEAD = """\
catalogue: t
version: 1
journeys:
  - id: j
    class: marketing
    priority: 1
    entry: {event: web.signup}
    steps:
      - {id: s, act: {action: gift, channels: [email]}}
"""


def problems(tail: str) -> list[str]:
    with pytest.raises(CatalogueError) as err:
        load_catalogue(HEAD + tail, filename="c.yaml")
    return [str(p) for p in err.value.problems]


def test_an_action_catalogue_with_conditions_stages_and_levers() -> None:
    cat = load_catalogue(
        HEAD
        + """\
lifecycle:
  - {stage: fresh, when: "profile.orders == 0"}
actions:
  - id: gift
    class: marketing
    channels: [email, push]
    value: 12.5
    when: {big_cart: "profile.cart_value >= 100", on_cart: "event.name == 'web.add_to_cart'"}
    stages: [fresh]
levers:
  actions: {gift: 0.5}
  channels: {push: 3}
"""
    )
    [gift] = cat.actions
    assert (gift.action_class, gift.channels, gift.value, gift.stages) == (
        "marketing",
        ("email", "push"),
        12.5,
        ("fresh",),
    )
    ctx = {"profile": {"cart_value": 150}, "event": {"name": "web.add_to_cart"}, "now": 0}
    assert gift.failed(ctx) is None
    assert gift.failed({**ctx, "profile": {"cart_value": 50}}) == "big_cart"
    assert gift.failed({**ctx, "event": {"name": "web.search"}}) == "on_cart"
    assert cat.levers.weight("gift", "push") == 1.5 and cat.levers.weight("x", "sms") == 1.0
    assert pickle.loads(pickle.dumps(cat)) == cat


def test_every_problem_in_the_actions_section_is_placed() -> None:
    found = problems(
        """\
actions:
  - id: gift
    class: promo
    channels: [email, fax]
    value: 0
    when: {Bad: "profile.nope > 1"}
    stages: [unknown]
"""
    )
    assert found == [
        "c.yaml:12:12: unknown action class 'promo'; known: marketing, service, transactional",
        "c.yaml:13:23: unknown channel 'fax'; known: email, sms, push, inapp, agent",
        "c.yaml:14:12: value must be a number from 1e-09 to 1e+09, found '0'",
        "c.yaml:15:12: condition name 'Bad' must be lower-case letters, digits and _",
        "c.yaml:15:18: unknown profile field 'nope'",
        "c.yaml:16:13: stages name lifecycle stages, and the catalogue defines none",
    ]


def test_an_act_on_a_channel_its_action_does_not_allow_is_refused() -> None:
    tail = "actions:\n  - {id: gift, class: marketing, channels: [sms], value: 1}\n"
    assert problems(tail) == ["c.yaml:9:47: 'gift' does not go out on email: sms"]


def test_an_action_reserved_for_other_journeys_is_refused() -> None:
    tail = (
        "actions:\n  - {id: gift, class: marketing, channels: [email], value: 1, journeys: [k]}\n"
    )
    assert problems(tail) == ["c.yaml:9:31: 'gift' is for k only"]


def test_levers_name_known_actions_and_channels_with_sane_weights() -> None:
    tail = (
        "actions:\n  - {id: gift, class: marketing, channels: [email], value: 1}\n"
        "levers:\n  actions: {gitf: 2}\n  channels: {sms: -1, push: .inf}\n"
    )
    found = problems(tail)
    assert found[0].startswith("c.yaml:13:13: unknown action 'gitf' (did you mean 'gift'?)")
    assert found[1:] == [
        "c.yaml:14:19: the weight of sms must be a number from 0 to 1000, found '-1'",
        "c.yaml:14:29: the weight of push must be a number from 0 to 1000, found '.inf'",
    ]


def test_a_contact_policy_section_changes_only_what_it_names() -> None:
    cat = load_catalogue(
        HEAD.replace("action: gift", "action: discount_offer")
        + """\
contact_policy:
  caps: {sms: {day: 0, week: 0}}
  min_gap: 2h
  quiet_hours: {start: 22:00, end: "07:30"}
  suppression: {after: 3}
  default_timezone: Europe/Berlin
"""
    )
    c = cat.contact
    assert c.cap("sms") == Cap(0, 0) and c.cap("email") == DEFAULT_POLICY.cap("email")
    assert (c.min_gap_s, c.quiet_start, c.quiet_end) == (7200, time(22, 0), time(7, 30))
    assert (c.suppress_after, c.suppress_for_s) == (3, DEFAULT_POLICY.suppress_for_s)
    assert c.default_timezone == "Europe/Berlin" and c.total_cap == DEFAULT_POLICY.total_cap


def test_a_contact_policy_the_engine_cannot_enforce_is_a_problem() -> None:
    body = HEAD.replace("action: gift", "action: discount_offer")
    with pytest.raises(CatalogueError) as err:
        load_catalogue(
            body + "contact_policy:\n  quiet_hours: {fallback: {push: email}}\n", filename="c.yaml"
        )
    [problem] = err.value.problems
    assert str(problem) == (
        "c.yaml:11:3: contact_policy: push's fallback email must be exempt from quiet hours"
    )
    with pytest.raises(CatalogueError, match="a time of day such as 21:00, found '25:00'"):
        load_catalogue(body + "contact_policy:\n  quiet_hours: {start: '25:00'}\n")
    with pytest.raises(CatalogueError, match="unknown key 'gap'"):
        load_catalogue(body + "contact_policy:\n  gap: 1h\n")


def test_the_default_catalogue_defines_every_action_its_journeys_take() -> None:
    cat = default_catalogue()
    taken = {s.action for j in cat.journeys for s in j.steps if hasattr(s, "action")}
    assert taken <= {a.action_id for a in cat.actions}
    nba = {a.action_id for a in cat.actions if a.next_best_action}
    assert nba == {"cart_reminder", "discount_offer", "product_recommendation", "support_followup"}


def test_a_minimum_gap_of_zero_turns_the_gap_off() -> None:
    body = HEAD.replace("action: gift", "action: discount_offer")
    assert load_catalogue(body + "contact_policy:\n  min_gap: 0s\n").contact.min_gap_s == 0
