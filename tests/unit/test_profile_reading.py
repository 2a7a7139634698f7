"""Only the parts of the profile's view that a catalogue reads (engine/profile_view.py's
``reading_of``, engine/journeys.py's ``profile_fields``): the same values as the whole
view, for every condition wherever a catalogue holds it."""

from __future__ import annotations

from itertools import combinations

from engine.journey_loader import load_catalogue
from engine.journeys import profile_fields
from engine.profile_updates import record_contact
from engine.profile_view import VIEW_FIELDS, reading_of, view
from tests.unit.test_pipeline import NOW, Harness, event
from tests.unit.test_profile import DAY_S, T, full

HOUR = 3_600_000


def test_each_field_read_alone_or_in_pairs_is_the_whole_views() -> None:
    """Scenario: a profile with every field away from its default, read now and a
    week later (the decayed counters and contact counts move). We expect each field,
    read on its own or with any other, to equal the whole view's, and a part's fields
    to come only with it."""
    p = record_contact(full(), "email", T + 2 * DAY_S * 1000)
    for at in (T, T + 7 * DAY_S * 1000):
        whole = view(p, at)
        for pair in combinations(sorted(VIEW_FIELDS), 2):
            part = view(p, at, reading_of(set(pair)))
            assert set(pair) <= set(part) < VIEW_FIELDS
            assert {name: part[name] for name in part} == {name: whole[name] for name in part}
    assert "contacts_7d" not in view(p, T, reading_of({"orders"}))
    assert {"contacts_24h", "last_contact_ms"} < set(view(p, T, reading_of({"contacts_7d"})))


def test_a_reading_of_no_known_field_or_of_everything_is_the_whole_view() -> None:
    p = full()
    assert view(p, T, reading_of(None)) == view(p, T) == view(p, T, reading_of(VIEW_FIELDS))
    assert set(view(p, T, reading_of({"orders", "no_such_field"}))) == VIEW_FIELDS


EVERY_PLACE = """\
catalogue: places
version: 1
journeys:
  - id: welcome
    class: marketing
    priority: 10
    entry: {event: web.signup, when: "profile.orders == 0"}
    capture: {spent: "profile.total_spend", zone: "profile.timezone"}
    exit:
      - when: "len(profile.open_tickets) > 0"
    steps:
      - id: look
        wait_for:
          event: web.product_view
          match: "profile.visits_7d > 1"
          timeout: 1d
          on_event: split
          on_timeout: done
      - id: split
        branch:
          - {when: "profile.category_views_7d.shoes >= 1", goto: say}
        else: done
      - {id: say, act: {action: gift, channels: [email]}}
      - {id: done, exit: true}
lifecycle:
  - {stage: loyal, when: "days_since(profile.last_order_ms) < 30"}
actions:
  - id: gift
    class: marketing
    channels: [email]
    value: 1
    when: {rested: "profile.contacts_24h.email == null"}
"""


def test_a_catalogue_names_the_fields_of_every_condition_it_holds() -> None:
    """Scenario: profile fields read in an entry, captures, an exit, a wait's match, a
    branch, a lifecycle stage and an action's condition. We expect each one named."""
    cat = load_catalogue(EVERY_PLACE)
    assert profile_fields(cat) == {
        "orders",
        "total_spend",
        "timezone",
        "open_tickets",
        "visits_7d",
        "category_views_7d",
        "last_order_ms",
        "contacts_24h",
    }


def test_a_condition_on_the_whole_profile_reads_every_field() -> None:
    cat = load_catalogue(EVERY_PLACE.replace('zone: "profile.timezone"', 'all: "profile"'))
    assert profile_fields(cat) is None
    assert len(reading_of(profile_fields(cat)).parts) == len(reading_of(None).parts)


RESTED = """\
catalogue: rested
version: 1
journeys:
  - id: j
    class: marketing
    priority: 1
    entry: {event: web.signup}
    steps:
      - {id: s, exit: true}
actions:
  - id: nudge
    class: marketing
    channels: [email]
    value: 1
    when: {rested: "profile.contacts_24h.email == null"}
contact_policy:
  min_gap: 1s
"""


def test_next_best_action_reads_the_contact_counts_its_catalogue_asks_for() -> None:
    """Scenario: an action whose condition is that email reached the customer not in
    the last day, and nothing else in the catalogue reads contacts. We expect the first
    decision point to act on email and the next one, an hour later, to be refused by
    that condition: the decision saw the contact counts the pipeline worked out."""
    h = Harness(catalogue=load_catalogue(RESTED))
    first = h.send("web", event("product_view", "e1", product_id="p1", time=NOW - HOUR)).decision
    assert first is not None and (first.action, first.channel) == ("nudge", "email")
    second = h.send("web", event("product_view", "e2", product_id="p1", time=NOW)).decision
    assert second is not None and not second.acts
    assert [c.excluded_by for c in second.candidates] == ["rested"]
