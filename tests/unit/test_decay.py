"""Decayed counters over a controlled clock: half-lives, late events, bounds."""

from __future__ import annotations

import pytest

from engine import decay
from engine.decay import (
    CATEGORY_HALF_LIFE_S,
    DAY_S,
    MAX_CATEGORIES,
    ORDERS_HALF_LIFE_S,
    VISITS_HALF_LIFE_S,
    Activity,
    at,
    combine,
    record,
)

T0 = 1_800_000_000


def test_each_counter_halves_over_its_own_half_life() -> None:
    a = record(Activity(), T0, visits=1.0, orders=1.0, spend=100.0, category="shoes")
    week = at(a, T0 + 7 * DAY_S)
    assert week.visits == pytest.approx(0.5)
    assert week.categories["shoes"] == pytest.approx(0.5)
    assert week.orders == pytest.approx(0.5 ** (7 / 30))
    month = at(a, T0 + ORDERS_HALF_LIFE_S)
    assert (month.orders, month.spend) == (pytest.approx(0.5), pytest.approx(50.0))
    assert at(a, T0 + 2 * VISITS_HALF_LIFE_S).visits == pytest.approx(0.25)
    assert CATEGORY_HALF_LIFE_S == VISITS_HALF_LIFE_S


def test_reading_decays_lazily_and_never_grows_or_moves_the_stored_time() -> None:
    a = record(Activity(), T0, visits=2.0)
    assert a.at_s == T0
    assert at(a, T0 - DAY_S) == a  # a read before the as-of time returns it as stored
    assert at(a, T0) == a
    later = at(a, T0 + DAY_S)
    assert later.at_s == T0 + DAY_S and later.visits < 2.0 and a.visits == 2.0


def test_an_update_decays_what_was_there_before_adding() -> None:
    a = record(Activity(), T0, visits=1.0)
    b = record(a, T0 + VISITS_HALF_LIFE_S, visits=1.0)
    assert (b.at_s, b.visits) == (T0 + VISITS_HALF_LIFE_S, 1.5)


def test_a_late_event_counts_as_decayed_as_its_age_whatever_the_arrival_order() -> None:
    early, late = T0, T0 + VISITS_HALF_LIFE_S
    in_order = record(record(Activity(), early, visits=1.0), late, visits=1.0)
    reversed_ = record(record(Activity(), late, visits=1.0), early, visits=1.0)
    assert in_order == reversed_
    assert reversed_.at_s == late and reversed_.visits == 1.5


def test_refunds_lower_spend_but_never_below_zero() -> None:
    a = record(Activity(), T0, orders=1.0, spend=30.0)
    assert record(a, T0, spend=-10.0).spend == 20.0
    assert record(a, T0, spend=-50.0).spend == 0.0


def test_stored_values_are_rounded_and_faded_categories_are_forgotten() -> None:
    a = record(Activity(), T0, visits=1.0, spend=10.0, category="books")
    a = record(a, T0 + 3 * DAY_S, visits=1.0)
    assert a.visits == round(a.visits, 3) and a.spend == round(a.spend, 2)
    gone = record(a, T0 + 200 * DAY_S, category="toys")
    assert list(gone.categories) == ["toys"]  # books decayed below 0.001


def test_categories_are_bounded_and_the_least_interesting_goes() -> None:
    a = Activity()
    for i in range(MAX_CATEGORIES):
        a = record(a, T0, category=f"c{i}")
    a = record(a, T0, category="c0")  # c0 counts 2, the others 1
    # A week later a fresh category outranks every stale one but c0.
    a = record(a, T0 + 7 * DAY_S, category="new")
    assert len(a.categories) == MAX_CATEGORIES
    assert "c0" in a.categories and "new" in a.categories
    assert sum(1 for k in a.categories if k.startswith("c")) == MAX_CATEGORIES - 1


def test_combining_brings_both_to_the_later_time() -> None:
    a = record(Activity(), T0, visits=2.0, category="shoes")
    b = record(Activity(), T0 + VISITS_HALF_LIFE_S, visits=1.0, orders=1.0, category="shoes")
    both = combine(a, b)
    assert both.at_s == T0 + VISITS_HALF_LIFE_S
    assert (both.visits, both.orders, both.categories) == (2.0, 1.0, {"shoes": 1.5})
    assert combine(b, a) == both


def test_from_doc_builds_what_init_builds_in_field_order() -> None:
    from dataclasses import fields

    doc = {"at_s": 7, "spend": 3.5, "categories": {"shoes": 1.0}}
    a = decay.from_doc(dict(doc))
    assert a == decay.Activity(**doc)
    assert list(vars(a)) == [f.name for f in fields(decay.Activity)]
    assert decay.from_doc({}) == decay.Activity()
    assert decay.from_doc({}).categories is not decay.from_doc({}).categories


def test_from_doc_rejects_a_name_that_is_not_a_field() -> None:
    with pytest.raises(TypeError, match="no field 'views'"):
        decay.from_doc({"views": 1.0})
