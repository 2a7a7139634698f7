"""The ids a profile only compares, and the recently applied events kept for dedup.

An id the profile never shows, only matches (an event's dedup key, a pending decision's
id), is kept as 48 bits of blake2b in 8 URL-safe base64 characters (``short_hash``).

The dedup memory (``Profile.seen``) maps the hash of each recently applied event to its
event time, oldest first and packed like the contact history: the first value is an
epoch second, each later one the gap from the one before. Membership is a dict lookup;
the times are only unpacked to forget what fell out of the window. Events of one
customer cluster in time, so the gaps are short: a full memory of 32 ids takes about
450 bytes where absolute times took about 700.

>>> limits = {"window_s": 60, "max_ids": 2}
>>> seen = remember({}, "web//e1", 1_800_000_000, now_s=1_800_000_000, **limits)
>>> seen = remember(seen, "web//e2", 1_800_000_030, now_s=1_800_000_030, **limits)
>>> seen, list(times(seen).values())
({'hM3cxo0z': 1800000000, '_mBdwENT': 30}, [1800000000, 1800000030])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from functools import lru_cache
from itertools import accumulate
from operator import sub

Seen = Mapping[str, int]


@lru_cache(maxsize=1024)
def short_hash(text: str) -> str:
    """48 bits of blake2b in 8 URL-safe base64 characters.

    A false "duplicate" needs two of one customer's few dozen recent ids to collide,
    about 1 in 10^11 per event; a wrong pending decision, two of at most four.

    >>> short_hash("web//e1"), short_hash_of_hex("84cddcc68d33")
    ('hM3cxo0z', 'hM3cxo0z')
    """
    # Cached: an event's dedup key is hashed to check it and again to remember it.
    # ``base64.urlsafe_b64encode`` without its two Python-level calls (a miss per event).
    digest = hashlib.blake2b(text.encode(), digest_size=6).digest()
    return binascii.b2a_base64(digest, newline=False).translate(_URL_SAFE).decode()


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def short_hash_of_hex(hexdigest: str) -> str:
    """The same 48 bits as profiles wrote them before (12 hex characters)."""
    return base64.urlsafe_b64encode(bytes.fromhex(hexdigest)).decode()


def remember(
    seen: Seen, key: str, time_s: int, *, now_s: int, window_s: int, max_ids: int
) -> dict[str, int]:
    """``seen`` with ``key`` applied at ``time_s``, less the ids older than ``now_s -
    window_s`` and, beyond ``max_ids``, the oldest."""
    new = short_hash(key)
    if not seen:
        return {new: time_s}
    if len(seen) < max_ids and new not in seen:
        # The common case, told without unpacking: the event is the customer's latest,
        # nothing fell out of the window and there is room, so it goes last.
        latest = sum(seen.values())
        if time_s >= latest and next(iter(seen.values())) >= now_s - window_s:
            return {**seen, new: time_s - latest}
    stamps = list(accumulate(seen.values()))  # sorted: the memory is kept oldest first
    start = bisect_left(stamps, now_s - window_s)
    hashes, stamps = list(seen)[start:], stamps[start:]
    if new in hashes:  # applied again: it moves to its new time
        i = hashes.index(new)
        del hashes[i], stamps[i]
    at = bisect_right(stamps, time_s)
    hashes.insert(at, new)
    stamps.insert(at, time_s)
    return _packed(hashes[-max_ids:], stamps[-max_ids:])


def union(a: Seen, b: Seen) -> dict[str, int]:
    """Both memories as one; a hash in both keeps ``b``'s time."""
    return packed(sorted({**times(a), **times(b)}.items(), key=lambda kv: kv[1]))


def times(seen: Seen) -> dict[str, int]:
    """Hash -> event time in epoch seconds."""
    return dict(zip(seen, accumulate(seen.values()), strict=True))


def packed(ordered: list[tuple[str, int]]) -> dict[str, int]:
    """Hash -> time, oldest first, as the first time and the gaps."""
    return _packed([h for h, _ in ordered], [t for _, t in ordered])


def _packed(hashes: list[str], stamps: list[int]) -> dict[str, int]:
    gaps = map(sub, stamps[1:], stamps)
    return dict(zip(hashes, [*stamps[:1], *gaps], strict=True))
