"""The profile cache writes a changed profile late, once for all its changes meanwhile,
and never lets a commit pass a change it has not written (engine/profile_cache.py)."""

from __future__ import annotations

import pytest
from faust.types import TP

from engine.profile import Profile
from engine.profile_cache import ProfileCache

WEB = TP("cx.web", 0)
SUPPORT = TP("cx.support", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Table:
    """What the cache wrote, in order: (key, partition, profile)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int, Profile]] = []

    def __call__(self, key: str, partition: int, profile: Profile) -> None:
        self.writes.append((key, partition, profile))


def cache(size: int = 10, delay: float = 2.0) -> tuple[ProfileCache, Table, Clock]:
    table, clock = Table(), Clock()
    return ProfileCache(size, table, delay, clock), table, clock


def test_the_cache_keeps_the_most_recently_used_profiles() -> None:
    cache = ProfileCache(2, lambda key, part, profile: None)
    a, b, c = (Profile(k) for k in ("a", "b", "c"))
    cache.put("a", 0, a)
    cache.put("b", 0, b)
    assert cache.get("a") is a  # now the most recent
    cache.put("c", 0, c)  # evicts b, the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (a, None, c)
    cache.drop("a")
    assert cache.get("a") is None and len(cache) == 1
    off = ProfileCache(0, lambda key, part, profile: None)
    off.put("a", 0, a)
    assert off.get("a") is None


def test_changes_within_the_delay_are_written_once_as_the_last_version() -> None:
    c, table, clock = cache()
    first, second = Profile("c-1", orders=1), Profile("c-1", orders=2)
    c.delivering(WEB, 0)
    c.put("c-1", 0, first)
    clock.now += 1.0
    c.delivering(WEB, 1)
    c.put("c-1", 0, second)
    assert c.get("c-1") is second and c.unwritten == 1
    clock.now += 0.9  # 1.9 s after the first change
    assert c.write_due() == 0 and table.writes == []
    clock.now += 0.1  # the delay is counted from the first change since the last write
    assert c.write_due() == 1
    assert table.writes == [("c-1", 0, second)]
    assert c.unwritten == 0 and c.get("c-1") is second  # still kept, now clean


def test_profiles_are_written_in_the_order_of_their_first_change() -> None:
    c, table, clock = cache()
    c.delivering(WEB, 0)
    for i in range(3):
        c.put(f"c-{i}", i, Profile(f"c-{i}"))
        clock.now += 1.0
    c.put("c-0", 0, Profile("c-0", orders=1))  # changed again: keeps its place
    clock.now = 100.0 + 3.5  # c-0 and c-1 are due, c-2 (changed at 102.0) is not
    assert c.write_due() == 2
    assert [(key, part) for key, part, _ in table.writes] == [("c-0", 0), ("c-1", 1)]
    assert table.writes[0][2].orders == 1
    assert c.write_all() == 1 and table.writes[-1][0] == "c-2"


def test_a_commit_is_held_at_the_first_record_whose_change_is_unwritten() -> None:
    c, table, clock = cache()
    assert c.held(WEB) is None  # nothing unwritten: the done offset
    c.delivering(WEB, 10)
    c.put("c-1", 0, Profile("c-1"))
    clock.now += 1.0
    c.delivering(SUPPORT, 5)
    c.put("c-2", 0, Profile("c-2"))
    c.delivering(WEB, 20)
    c.put("c-1", 0, Profile("c-1", orders=1))
    assert (c.held(WEB), c.held(SUPPORT)) == (10, 5)
    clock.now += 1.0  # c-1's delay is over, c-2's is not
    assert c.write_due() == 1
    # The records of WEB from 20 on came after c-2's change (still unwritten).
    assert (c.held(WEB), c.held(SUPPORT)) == (20, 5)
    c.write_all()
    assert (c.held(WEB), c.held(SUPPORT)) == (None, None)
    assert len(table.writes) == 2


def test_a_partition_with_nothing_delivered_since_the_oldest_change_is_not_held() -> None:
    c, _, _ = cache()
    c.delivering(SUPPORT, 7)
    c.delivering(WEB, 3)
    c.put("c-1", 0, Profile("c-1"))
    assert (c.held(WEB), c.held(SUPPORT)) == (3, None)


def test_a_profile_pushed_out_of_memory_is_written_first() -> None:
    c, table, _ = cache(size=2)
    c.delivering(WEB, 0)
    c.put("a", 0, Profile("a"))
    c.keep("b", Profile("b"))  # decoded from the table: nothing to write
    c.put("c", 1, Profile("c"))  # evicts a, the least recently used
    assert [(key, part) for key, part, _ in table.writes] == [("a", 0)]
    assert c.get("a") is None and c.unwritten == 1
    c.keep("d", Profile("d"))  # evicts b: clean, not written
    assert len(table.writes) == 1
    assert c.held(WEB) == 0  # c is still unwritten


def test_a_dropped_profile_is_not_written() -> None:
    c, table, clock = cache()
    c.delivering(WEB, 0)
    c.put("c-1", 0, Profile("c-1"))
    c.drop("c-1")  # the caller deleted it from the table
    clock.now += 5.0
    assert c.write_due() == 0 and table.writes == [] and c.held(WEB) is None


@pytest.mark.parametrize(("size", "delay"), [(10, 0.0), (0, 2.0)])
def test_without_a_delay_or_a_cache_every_change_is_written_at_once(
    size: int, delay: float
) -> None:
    c, table, _ = cache(size, delay)
    c.delivering(WEB, 0)
    c.put("c-1", 0, Profile("c-1"))
    c.put("c-1", 0, Profile("c-1", orders=1))
    assert [p.orders for _, _, p in table.writes] == [0, 1]
    assert c.unwritten == 0 and c.held(WEB) is None
    assert len(c) == (1 if size else 0)


def test_clear_forgets_what_is_kept() -> None:
    c, table, _ = cache()
    c.delivering(WEB, 0)
    c.put("c-1", 0, Profile("c-1"))
    c.write_all()
    c.clear()
    assert len(c) == 0 and c.get("c-1") is None and len(table.writes) == 1


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        ProfileCache(-1, Table())
    with pytest.raises(ValueError, match="0 or more"):
        ProfileCache(1, Table(), -0.5)


def test_a_write_that_fails_leaves_the_change_unwritten_and_the_commit_held() -> None:
    c, table, clock = cache()
    c.delivering(WEB, 4)
    c.put("c-1", 0, Profile("c-1"))
    clock.now += 3.0

    def failing(key: str, partition: int, profile: Profile) -> None:
        raise OSError("store failed")

    c._write = failing
    with pytest.raises(OSError):
        c.write_due()
    assert c.unwritten == 1 and c.held(WEB) == 4
    c._write = table
    assert c.write_due() == 1 and c.held(WEB) is None
