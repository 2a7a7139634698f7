"""Dismissals per action: packed, windowed, bounded."""

from __future__ import annotations

from engine.dismissals import DAY_S, MAX_ACTIONS, MAX_PER_ACTION, WINDOW_S, add, times

T0 = 1_800_000_000


def test_a_late_dismissal_is_put_in_its_place() -> None:
    m = add(add({}, "discount_offer", T0 + 100), "discount_offer", T0)
    assert m == {"discount_offer": (T0, 100)} and times(m["discount_offer"]) == [T0, T0 + 100]


def test_only_the_latest_dismissals_of_an_action_are_kept() -> None:
    m: dict[str, tuple[int, ...]] = {}
    for i in range(MAX_PER_ACTION + 2):
        m = add(m, "cart_reminder", T0 + i * DAY_S)
    assert times(m["cart_reminder"]) == [T0 + i * DAY_S for i in range(2, MAX_PER_ACTION + 2)]


def test_dismissals_older_than_the_window_before_the_newest_are_dropped() -> None:
    m = add({}, "discount_offer", T0)
    m = add(m, "cart_reminder", T0 + 10)
    m = add(m, "cart_reminder", T0 + WINDOW_S)  # the first is exactly a window older
    assert set(m) == {"cart_reminder"}
    assert times(m["cart_reminder"]) == [T0 + 10, T0 + WINDOW_S]


def test_beyond_max_actions_the_one_dismissed_longest_ago_goes() -> None:
    m: dict[str, tuple[int, ...]] = {}
    for i in range(MAX_ACTIONS + 1):
        m = add(m, f"action{i}", T0 + (MAX_ACTIONS - i) * 60)  # action{MAX_ACTIONS} is oldest
    assert len(m) == MAX_ACTIONS and f"action{MAX_ACTIONS}" not in m
    assert list(m) == sorted(m)  # stored in a stable order
