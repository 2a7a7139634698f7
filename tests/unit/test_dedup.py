"""The dedup memory: windowed, bounded, packed."""

from __future__ import annotations

from engine.dedup import packed, remember, short_hash, times, union

T0 = 1_800_000_000
LIMITS = {"window_s": 3600, "max_ids": 3}


def test_ids_older_than_the_window_before_now_are_forgotten() -> None:
    seen = remember({}, "a", T0, now_s=T0, **LIMITS)
    seen = remember(seen, "b", T0 + 3600, now_s=T0 + 3600, **LIMITS)
    assert set(seen) == {short_hash("a"), short_hash("b")}  # exactly a window old: kept
    seen = remember(seen, "c", T0 + 3601, now_s=T0 + 3601, **LIMITS)
    assert set(seen) == {short_hash("b"), short_hash("c")}


def test_beyond_max_ids_the_oldest_go_and_a_late_one_takes_its_place_in_time() -> None:
    seen: dict[str, int] = {}
    for i, key in enumerate("abc"):
        seen = remember(seen, key, T0 + 10 * i, now_s=T0 + 10 * i, **LIMITS)
    seen = remember(seen, "late", T0 + 5, now_s=T0 + 20, **LIMITS)
    assert times(seen) == {
        short_hash("late"): T0 + 5,
        short_hash("b"): T0 + 10,
        short_hash("c"): T0 + 20,
    }
    assert list(seen.values()) == [T0 + 5, 5, 10]


def test_union_keeps_both_in_time_order() -> None:
    a = packed([("x", T0), ("y", T0 + 50)])
    b = packed([("z", T0 + 20), ("y", T0 + 60)])
    assert times(union(a, b)) == {"x": T0, "z": T0 + 20, "y": T0 + 60}
    assert union({}, {}) == {} and packed([]) == {}
