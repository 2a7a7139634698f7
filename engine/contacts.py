"""When each channel last reached a customer: the history a frequency cap counts.

Per channel, the contact times (epoch seconds) of the last ``WINDOW_S``, at most
``MAX_CONTACTS``. Bounds, and why:

- ``WINDOW_S`` = 7 days: the longest cap period in use is "n per week"; anything older
  no cap can count.
- ``MAX_CONTACTS`` = 20 per channel: above any sane weekly cap (20 a week is about 3 a
  day), so a cap of up to 20 per window sees every contact it needs; a customer the
  engine reaches more often than that keeps only the latest 20, which still reads
  "over the cap".

The window is measured back from the newest contact of any channel, not from a clock,
so the history stays a pure function of the contacts recorded.

Stored packed, to keep the profile small: the oldest time, then the gaps from each
contact to the next (``(1800000000, 30, 5)`` is 1800000000, 1800000030, 1800000035).
Dense histories, the long ones, cost two or three digits a contact instead of ten.

>>> h = add(add({}, "email", 1_800_000_000), "email", 1_800_000_030)
>>> h, unpack(h["email"])
({'email': (1800000000, 30)}, [1800000000, 1800000030])
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from itertools import accumulate, pairwise

WINDOW_S = 7 * 86_400
MAX_CONTACTS = 20

History = Mapping[str, tuple[int, ...]]


def add(history: History, channel: str, time_s: int) -> dict[str, tuple[int, ...]]:
    """``history`` with a contact on ``channel`` at ``time_s``, pruned to the bounds."""
    times = {ch: unpack(packed) for ch, packed in history.items()}
    times[channel] = sorted([*times.get(channel, []), time_s])
    horizon = max(t[-1] for t in times.values() if t) - WINDOW_S
    kept = {ch: [x for x in t if x > horizon][-MAX_CONTACTS:] for ch, t in times.items()}
    return {ch: pack(t) for ch, t in kept.items() if t}


def since(packed: tuple[int, ...], start_s: int) -> int:
    """How many contacts are at or after ``start_s``."""
    return count_since(unpack(packed), start_s)


def count_since(times: list[int], start_s: int) -> int:
    """How many of the unpacked, sorted ``times`` are at or after ``start_s``: one
    bisection (a history is always sorted), not a comparison per contact.

    >>> count_since([10, 20, 30], 20), count_since([10, 20, 30], 31), count_since([], 5)
    (2, 0, 0)
    """
    return len(times) - bisect_left(times, start_s)


def latest(packed: tuple[int, ...]) -> int:
    """The newest contact time (0 for an empty history)."""
    return sum(packed)


def pack(times: list[int]) -> tuple[int, ...]:
    """Sorted times as the first one and the gaps between neighbours."""
    return (times[0], *(b - a for a, b in pairwise(times))) if times else ()


def unpack(packed: tuple[int, ...]) -> list[int]:
    return list(accumulate(packed))
