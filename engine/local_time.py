"""A customer's local time, as the contact policy reads it (``engine.contact_policy``):
the zone, whether it is quiet hours, where a local day begins and ends, and when quiet
hours end. A day is the local calendar day, 23 or 25 hours on a DST change."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # engine.contact_policy imports ``zone_named`` from here
    from engine.contact_policy import ContactPolicy
    from engine.profile import Profile


@lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone named ``name``, None for a name this host does not know. Cached: the
    lookup is per decision point, and a failed one raises (which ``ZoneInfo`` does not
    cache)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def customer_zone(policy: ContactPolicy, p: Profile) -> ZoneInfo:
    """The customer's time zone: the profile's, else the policy's default."""
    zone = zone_named(p.timezone) if p.timezone else None
    return zone or ZoneInfo(policy.default_timezone)


def in_quiet_hours(policy: ContactPolicy, local: time) -> bool:
    """Whether the local wall-clock time ``local`` is inside the quiet hours.

    >>> from engine.contact_policy import DEFAULT_POLICY
    >>> [in_quiet_hours(DEFAULT_POLICY, time(h)) for h in (7, 8, 20, 21, 23)]
    [True, False, False, True, True]
    """
    start, end = policy.quiet_start, policy.quiet_end
    if start <= end:
        return start <= local < end
    return local >= start or local < end


@lru_cache(maxsize=1024)
def day_bounds(zone: ZoneInfo, today: date) -> tuple[int, int] | None:
    """The local day ``today`` in ``zone`` as epoch seconds ``[start, end)``: the first
    instant whose local date is ``today`` and the first of the next day, so that a
    contact is on that day when ``start <= t < end`` (23 or 25 hours on a DST day).
    Cached: many customers share a zone and a day. Comparing integers instead of
    building a zone-aware datetime per contact saves ~1.3k instructions per decision
    point of ``core_throughput --workload decide``, whose customers have about one
    contact each; a longer history saves more.

    Local midnight is read on the clock before any change (PEP 495, fold 0), which is
    the change's instant when it skips midnight itself. Checked against the zone: None
    (count by local dates, one by one) when a change skips past midnight from before it,
    so that midnight does not bound the day. Relies on local dates never running
    backwards: no tz database zone falls back across a midnight (Beirut and Santiago
    fall back from 24:00 to 23:00, which keeps dates in order).

    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> start, end = day_bounds(berlin, date(2026, 3, 29))  # clocks go 02:00 -> 03:00
    >>> (end - start) // 3600, datetime.fromtimestamp(start, berlin).isoformat()
    (23, '2026-03-29T00:00:00+01:00')
    """
    start = int(datetime.combine(today, time(), tzinfo=zone).timestamp())
    end = int(datetime.combine(today + timedelta(days=1), time(), tzinfo=zone).timestamp())

    def local_date(t: int) -> date:
        return datetime.fromtimestamp(t, zone).date()

    if local_date(start - 1) < today == local_date(start) and (
        local_date(end - 1) == today < local_date(end)
    ):
        return start, end
    return None


def quiet_hours_end_ms(policy: ContactPolicy, local: datetime, zone: ZoneInfo) -> int:
    """The first moment after ``local`` (inside quiet hours) at which they end: the next
    ``quiet_end`` on the local clock, whatever DST did in between. A ``quiet_end`` a DST
    change skips that night is read on the clock before the change (PEP 495, fold 0)."""
    day: date = local.date()
    if local.time() >= policy.quiet_end:
        day += timedelta(days=1)
    return int(datetime.combine(day, policy.quiet_end, tzinfo=zone).timestamp()) * 1000
