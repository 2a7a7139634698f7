"""Contact history per channel: packed, windowed, bounded."""

from __future__ import annotations

from engine.contacts import MAX_CONTACTS, WINDOW_S, add, latest, pack, since, unpack

T0 = 1_800_000_000


def test_times_are_packed_as_the_first_and_the_gaps() -> None:
    times = [T0, T0 + 5, T0 + 5, T0 + 3600]
    assert pack(times) == (T0, 5, 0, 3595)
    assert unpack(pack(times)) == times
    assert pack([]) == () and unpack(()) == [] and latest(()) == 0
    assert latest(pack(times)) == T0 + 3600


def test_a_late_contact_is_put_in_its_place() -> None:
    h = add(add({}, "sms", T0 + 100), "sms", T0)
    assert unpack(h["sms"]) == [T0, T0 + 100]


def test_contacts_older_than_the_window_before_the_newest_are_dropped_on_every_channel() -> None:
    h = add({}, "email", T0)
    h = add(h, "push", T0 + 10)
    h = add(h, "email", T0 + WINDOW_S)  # the first email is exactly a window older
    assert unpack(h["email"]) == [T0 + WINDOW_S]
    assert unpack(h["push"]) == [T0 + 10]
    h = add(h, "email", T0 + WINDOW_S + 10)
    assert "push" not in h


def test_at_most_max_contacts_per_channel_the_latest_kept() -> None:
    h: dict[str, tuple[int, ...]] = {}
    for i in range(MAX_CONTACTS + 5):
        h = add(h, "push", T0 + 60 * i)
    h = add(h, "email", T0)
    kept = unpack(h["push"])
    assert len(kept) == MAX_CONTACTS and kept[0] == T0 + 60 * 5
    assert unpack(h["email"]) == [T0]


def test_since_counts_contacts_at_or_after_a_time() -> None:
    packed = pack([T0, T0 + 100, T0 + 200])
    assert [since(packed, t) for t in (T0 - 1, T0 + 100, T0 + 201)] == [3, 2, 0]
