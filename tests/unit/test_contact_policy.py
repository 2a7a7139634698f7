"""The contact policy over a controlled clock: consent, caps, gap, quiet hours, outcome
suppression, the transactional bypass, and decisions competing for one customer's slots.

Times are built from local wall-clock times in the customer's zone (``local``), so each
test reads as the customer would see it; none reads the real clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions import ActionClass
from engine.contact_check import Moment, Verdict, accept, check, suppressed_until_ms
from engine.contact_policy import DEFAULT_POLICY, REASONS, WEEK_S, Cap, ContactPolicy
from engine.contacts import unpack
from engine.frozen import FrozenDict
from engine.local_time import day_bounds, in_quiet_hours
from engine.profile import Profile
from engine.profile_updates import apply_event, record_contact, record_outcome
from topics.events import Event

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

NO_QUIET = time(0)
"""Quiet hours from midnight to midnight: none, for the tests of other rules."""


def local(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    """Epoch milliseconds of a wall-clock time in ``zone``."""
    return int(datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(zone)).timestamp()) * 1000


def loose(**changes: Any) -> ContactPolicy:
    """A policy where only the rule under test can bite: generous caps, no gap, no quiet
    hours, unless ``changes`` say otherwise."""
    base = ContactPolicy(
        channel_caps={ch: Cap(20, 20) for ch in ("email", "sms", "push", "inapp", "agent")},
        total_cap=Cap(100, 100),
        min_gap_s=0,
        quiet_start=NO_QUIET,
        quiet_end=NO_QUIET,
    )
    return replace(base, **changes)


def contacted(p: Profile, channel: str, *times_ms: int) -> Profile:
    for t in times_ms:
        p = record_contact(p, channel, t)
    return p


def verdict(
    policy: ContactPolicy,
    p: Profile,
    channel: str,
    now_ms: int,
    action: str = "discount_offer",
    action_class: ActionClass = "marketing",
) -> Verdict:
    return check(policy, p, action, action_class, channel, now_ms=now_ms)


def reason(
    policy: ContactPolicy,
    p: Profile,
    channel: str,
    now_ms: int,
    action: str = "discount_offer",
    action_class: ActionClass = "marketing",
) -> str | None:
    return verdict(policy, p, channel, now_ms, action, action_class).reason


def take(
    policy: ContactPolicy, p: Profile, channel: str, now_ms: int
) -> tuple[Profile, str | None]:
    """Check a marketing contact and, if allowed, accept it."""
    v = verdict(policy, p, channel, now_ms)
    return (accept(p, v) if v.allowed else p), v.reason


# -- consent ---------------------------------------------------------------------------


@pytest.mark.parametrize("action_class", ["marketing", "service", "transactional"])
def test_an_opted_out_channel_refuses_every_class_transactional_included(
    action_class: ActionClass,
) -> None:
    p = Profile("c1", timezone=BERLIN, opted_out=("sms",))
    noon = local(BERLIN, 2027, 1, 15, 12)
    assert reason(DEFAULT_POLICY, p, "sms", noon, action_class=action_class) == "no_consent"
    assert reason(DEFAULT_POLICY, p, "email", noon, action_class=action_class) is None


def test_an_unsubscribe_withdraws_consent_until_an_opt_in() -> None:
    noon = local(BERLIN, 2027, 1, 15, 12)
    p = Profile("c1", timezone=BERLIN)

    def outcome(etype: str, source: str = "outcome") -> Event:
        return Event(source, etype, f"e-{etype}", "c1", noon, {"channel": "email"})

    p = apply_event(p, outcome("unsubscribed"), topic="cx.outcome", partition=0, offset=1)
    assert reason(DEFAULT_POLICY, p, "email", noon, action_class="service") == "no_consent"
    p = apply_event(p, outcome("opt_in", "consent"), topic="cx.consent", partition=0, offset=1)
    assert reason(DEFAULT_POLICY, p, "email", noon, action_class="service") is None


# -- caps, each right at its boundary ----------------------------------------------------


def test_channel_day_cap_counts_the_local_calendar_day() -> None:
    """Scenario: email may go twice a day to a Berlin customer. We expect the second of
    the day allowed and the third refused, up to the last second of the local day, and
    the next local day to start afresh at local midnight (23:00 UTC, not 00:00 UTC)."""
    policy = loose(channel_caps={"email": Cap(2, 20)})
    p = Profile("c1", timezone=BERLIN)
    p, first = take(policy, p, "email", local(BERLIN, 2027, 1, 15, 9))
    p, second = take(policy, p, "email", local(BERLIN, 2027, 1, 15, 12))
    assert (first, second) == (None, None)
    assert reason(policy, p, "email", local(BERLIN, 2027, 1, 15, 12, 1)) == "cap_channel_day"
    last_second = local(BERLIN, 2027, 1, 15, 23, 59, 59)
    assert reason(policy, p, "email", last_second) == "cap_channel_day"
    assert reason(policy, p, "email", last_second + 1000) is None
    assert reason(policy, p, "push", last_second) is None  # another channel's own cap


def test_channel_week_cap_counts_the_last_seven_days_rolling() -> None:
    policy = loose(channel_caps={"email": Cap(20, 3)})
    day0 = local(BERLIN, 2027, 1, 11, 10)
    p = Profile("c1", timezone=BERLIN)
    for day in range(3):
        p, why = take(policy, p, "email", day0 + day * DAY_MS)
        assert why is None  # the third is the week's last slot
    assert reason(policy, p, "email", day0 + 3 * DAY_MS) == "cap_channel_week"
    week_later = day0 + WEEK_S * 1000
    assert reason(policy, p, "email", week_later - 1000) == "cap_channel_week"
    assert reason(policy, p, "email", week_later) is None  # the first left the window


def test_total_day_cap_counts_every_channel() -> None:
    policy = loose(total_cap=Cap(2, 100))
    p = Profile("c1", timezone=NEW_YORK)
    p, first = take(policy, p, "email", local(NEW_YORK, 2027, 1, 15, 9))
    p, last_slot = take(policy, p, "push", local(NEW_YORK, 2027, 1, 15, 10))
    assert (first, last_slot) == (None, None)
    assert reason(policy, p, "sms", local(NEW_YORK, 2027, 1, 15, 11)) == "cap_total_day"
    assert reason(policy, p, "sms", local(NEW_YORK, 2027, 1, 16, 0)) is None


def test_total_week_cap_counts_every_channel_over_seven_days() -> None:
    policy = loose(total_cap=Cap(100, 3))
    day0 = local(NEW_YORK, 2027, 1, 11, 10)
    p = Profile("c1", timezone=NEW_YORK)
    for day, channel in enumerate(("email", "push", "sms")):
        p, why = take(policy, p, channel, day0 + day * DAY_MS)
        assert why is None
    assert reason(policy, p, "inapp", day0 + 3 * DAY_MS) == "cap_total_week"
    assert reason(policy, p, "inapp", day0 + WEEK_S * 1000 - 1000) == "cap_total_week"
    assert reason(policy, p, "inapp", day0 + WEEK_S * 1000) is None


def test_min_gap_holds_between_contacts_on_any_channel_either_side() -> None:
    policy = loose(min_gap_s=3600)
    t = local(BERLIN, 2027, 1, 15, 12)
    p = contacted(Profile("c1", timezone=BERLIN), "push", t)
    assert reason(policy, p, "email", t + HOUR_MS - 1000) == "min_gap"
    assert reason(policy, p, "email", t + HOUR_MS) is None
    # A late event decided after a later contact keeps its distance too.
    assert reason(policy, p, "email", t - HOUR_MS + 1000) == "min_gap"
    assert reason(policy, p, "email", t - HOUR_MS) is None


# -- quiet hours ---------------------------------------------------------------------------


def test_quiet_hours_wrap_midnight_in_the_customers_zone() -> None:
    """Scenario: the default window, 21:00-08:00, for a New York customer (UTC-5 in
    January). We expect quiet from 21:00 to 07:59:59 local, and an email then deferred to
    the exact next 08:00 local; the same moments are not quiet for a UTC customer."""
    p = Profile("c1", timezone=NEW_YORK)
    eight = local(NEW_YORK, 2027, 1, 16, 8)
    assert reason(DEFAULT_POLICY, p, "email", local(NEW_YORK, 2027, 1, 15, 20, 59, 59)) is None
    for h, mi, s in ((21, 0, 0), (23, 30, 0)):
        v = verdict(DEFAULT_POLICY, p, "email", local(NEW_YORK, 2027, 1, 15, h, mi, s))
        assert (v.reason, v.defer_until_ms, v.channel) == ("quiet_hours", eight, "email")
    for h, mi, s in ((0, 0, 0), (3, 0, 0), (7, 59, 59)):
        v = verdict(DEFAULT_POLICY, p, "email", local(NEW_YORK, 2027, 1, 16, h, mi, s))
        assert (v.reason, v.defer_until_ms) == ("quiet_hours", eight)
    assert reason(DEFAULT_POLICY, p, "email", eight) is None
    # 21:00 New York is 02:00 UTC: quiet for a customer without a zone (UTC by default) too,
    # but 16:00 New York (21:00 UTC) is quiet only for the UTC customer.
    utc = Profile("c2")
    assert reason(DEFAULT_POLICY, utc, "email", local(NEW_YORK, 2027, 1, 15, 16)) == "quiet_hours"
    assert reason(DEFAULT_POLICY, p, "email", local(NEW_YORK, 2027, 1, 15, 16)) is None
    tokyo = replace(DEFAULT_POLICY, default_timezone="Asia/Tokyo")
    assert reason(tokyo, utc, "email", local("Asia/Tokyo", 2027, 1, 15, 12)) is None


def test_an_unknown_zone_on_the_profile_falls_back_to_the_default_zone() -> None:
    p = Profile("c1", timezone="Mars/Olympus_Mons")
    assert reason(DEFAULT_POLICY, p, "email", local("UTC", 2027, 1, 15, 22)) == "quiet_hours"


@pytest.mark.parametrize(
    ("zone", "evening", "morning", "hours"),
    [
        # Berlin springs forward on 2027-03-28: 22:00 CET to 08:00 CEST is 9 hours.
        (BERLIN, (2027, 3, 27, 22), (2027, 3, 28, 8), 9),
        # New York falls back on 2027-11-07: 22:00 EDT to 08:00 EST is 11 hours.
        (NEW_YORK, (2027, 11, 6, 22), (2027, 11, 7, 8), 11),
    ],
)
def test_deferral_lands_on_the_local_morning_across_a_dst_change(
    zone: str, evening: tuple[int, int, int, int], morning: tuple[int, int, int, int], hours: int
) -> None:
    p = Profile("c1", timezone=zone)
    v = verdict(DEFAULT_POLICY, p, "sms", local(zone, *evening))
    assert v.reason == "quiet_hours" and v.defer_until_ms == local(zone, *morning)
    assert v.defer_until_ms - local(zone, *evening) == hours * HOUR_MS  # not a naive 10
    assert datetime.fromtimestamp(v.defer_until_ms / 1000, ZoneInfo(zone)).time() == time(8)
    assert reason(DEFAULT_POLICY, p, "sms", v.defer_until_ms) is None
    assert reason(DEFAULT_POLICY, p, "sms", v.defer_until_ms - 1000) == "quiet_hours"


def test_the_day_a_dst_change_shortens_is_one_day_for_the_day_cap() -> None:
    """2027-03-28 in Berlin has 23 hours: a contact at 00:30 and one at 23:30 local are
    23 hours apart, on the same day."""
    policy = loose(channel_caps={"email": Cap(1, 20)})
    p = contacted(Profile("c1", timezone=BERLIN), "email", local(BERLIN, 2027, 3, 28, 0, 30))
    late = local(BERLIN, 2027, 3, 28, 23, 30)
    assert late - local(BERLIN, 2027, 3, 28, 0, 30) == 22 * HOUR_MS
    assert reason(policy, p, "email", late) == "cap_channel_day"
    assert reason(policy, p, "email", local(BERLIN, 2027, 3, 29, 0)) is None


def test_a_window_that_does_not_wrap() -> None:
    siesta = replace(DEFAULT_POLICY, quiet_start=time(13), quiet_end=time(15, 30))
    assert [in_quiet_hours(siesta, time(h, m)) for h, m in ((12, 59), (13, 0), (15, 29))] == [
        False,
        True,
        True,
    ]
    p = Profile("c1", timezone="Europe/Madrid")
    v = verdict(siesta, p, "email", local("Europe/Madrid", 2027, 6, 1, 14))
    assert v.defer_until_ms == local("Europe/Madrid", 2027, 6, 1, 15, 30)
    assert in_quiet_hours(replace(DEFAULT_POLICY, quiet_end=time(21)), time(21)) is False


def test_a_push_in_quiet_hours_moves_to_inapp_when_inapp_is_allowed() -> None:
    """Scenario: a push is due at 23:00 local; the policy moves night-time pushes to
    in-app. We expect it allowed on inapp and recorded there; deferred instead when the
    customer opted out of in-app or its cap is full; an email is deferred in any case."""
    night = local(BERLIN, 2027, 1, 15, 23)
    morning = local(BERLIN, 2027, 1, 16, 8)
    p = Profile("c1", timezone=BERLIN)
    moved = verdict(DEFAULT_POLICY, p, "push", night)
    assert (moved.allowed, moved.channel) == (True, "inapp")
    assert set(accept(p, moved).contacts) == {"inapp"}
    assert verdict(DEFAULT_POLICY, p, "inapp", night).allowed  # exempt itself

    no_inapp = replace(p, opted_out=("inapp",))
    v = verdict(DEFAULT_POLICY, no_inapp, "push", night)
    assert (v.reason, v.channel, v.defer_until_ms) == ("quiet_hours", "push", morning)
    busy = contacted(p, "inapp", *(local(BERLIN, 2027, 1, 15, h) for h in (9, 12, 15)))
    assert reason(DEFAULT_POLICY, busy, "push", night) == "quiet_hours"
    v = verdict(DEFAULT_POLICY, p, "email", night)
    assert (v.reason, v.defer_until_ms) == ("quiet_hours", morning)


# -- outcome-based suppression ---------------------------------------------------------------


def test_two_dismissals_within_30_days_suppress_the_action_for_60_days() -> None:
    """Scenario: the customer dismissed discount_offer on 1 March and again on 20 March.
    We expect it suppressed on every channel from the second dismissal until exactly 60
    days after it, other actions unaffected, and released after."""
    first, second = local(BERLIN, 2027, 3, 1, 12), local(BERLIN, 2027, 3, 20, 12)
    p = Profile("c1", timezone=BERLIN)
    p = record_outcome(p, "discount_offer", "dismissed", first)
    p = record_outcome(p, "discount_offer", "converted", first + DAY_MS)  # not counted
    noon = local(BERLIN, 2027, 3, 19, 12)
    assert reason(DEFAULT_POLICY, p, "email", noon) is None  # one dismissal is noise
    p = record_outcome(p, "discount_offer", "dismissed", second)
    release = second + 60 * DAY_MS
    assert suppressed_until_ms(DEFAULT_POLICY, p, "discount_offer", second) == release
    for t, channel in ((second, "email"), (second + 30 * DAY_MS, "sms"), (release - 1000, "email")):
        assert reason(DEFAULT_POLICY, p, channel, t) == "suppressed_outcome"
    assert reason(DEFAULT_POLICY, p, "email", second, action="cart_reminder") is None
    assert reason(DEFAULT_POLICY, p, "email", release) is None
    assert suppressed_until_ms(DEFAULT_POLICY, p, "discount_offer", release) is None


def test_dismissals_further_apart_than_the_window_do_not_suppress() -> None:
    t = local(BERLIN, 2027, 3, 1, 12)
    p = record_outcome(Profile("c1", timezone=BERLIN), "discount_offer", "dismissed", t)
    p = record_outcome(p, "discount_offer", "dismissed", t + 30 * DAY_MS + 1000)
    assert reason(DEFAULT_POLICY, p, "email", t + 31 * DAY_MS) is None
    strict = replace(DEFAULT_POLICY, suppress_after=1)
    assert reason(strict, p, "email", t + 31 * DAY_MS) == "suppressed_outcome"


def test_a_dismissal_does_not_suppress_before_it_happened() -> None:
    """A late event decided at a time before the dismissals were made is not refused."""
    t = local(BERLIN, 2027, 3, 1, 12)
    p = Profile("c1", timezone=BERLIN)
    for day in (0, 1):
        p = record_outcome(p, "discount_offer", "dismissed", t + day * DAY_MS)
    assert reason(DEFAULT_POLICY, p, "email", t + DAY_MS - 1000) is None
    assert reason(DEFAULT_POLICY, p, "email", t + DAY_MS) == "suppressed_outcome"


# -- transactional ---------------------------------------------------------------------------


def test_transactional_bypasses_caps_gap_quiet_hours_and_suppression_not_consent() -> None:
    night = local(BERLIN, 2027, 1, 15, 23)
    p = Profile("c1", timezone=BERLIN)
    for h in (8, 10, 12):
        p = contacted(p, "email", local(BERLIN, 2027, 1, 15, h))
    for d in (1, 2):
        p = record_outcome(p, "order_confirmation", "dismissed", night - d * HOUR_MS)
    p = contacted(p, "sms", night - 60_000)
    confirm = "order_confirmation"
    assert reason(DEFAULT_POLICY, p, "sms", night, confirm, "marketing") == "suppressed_outcome"
    assert reason(DEFAULT_POLICY, p, "sms", night, confirm, "transactional") is None
    assert reason(DEFAULT_POLICY, p, "sms", night, "receipt", "service") == "quiet_hours"
    v = verdict(DEFAULT_POLICY, p, "email", night, "receipt", "transactional")
    assert (v.allowed, v.channel) == (True, "email")  # not moved, not deferred
    p = accept(p, v)
    assert reason(DEFAULT_POLICY, p, "email", night + HOUR_MS, "receipt", "transactional") is None
    gone = replace(p, opted_out=("email",))
    assert reason(DEFAULT_POLICY, gone, "email", night, "receipt", "transactional") == "no_consent"


def test_a_transactional_contact_counts_for_the_others() -> None:
    nine = local(BERLIN, 2027, 1, 15, 9)
    p = Profile("c1", timezone=BERLIN)
    p = accept(p, verdict(DEFAULT_POLICY, p, "email", nine, "receipt", "transactional"))
    assert reason(DEFAULT_POLICY, p, "email", nine + 2 * HOUR_MS) == "cap_channel_day"
    assert reason(DEFAULT_POLICY, p, "sms", nine + HOUR_MS // 2) == "min_gap"


# -- decisions competing for one customer's slots ---------------------------------------------


@pytest.mark.parametrize(
    ("second_channel", "cap_reason"), [("email", "cap_channel_day"), ("sms", "cap_total_day")]
)
def test_two_journeys_compete_for_the_last_cap_slot(second_channel: str, cap_reason: str) -> None:
    """Scenario: a Berlin customer had two contacts today (default caps: email once a
    day, three contacts a day in all); one event makes two journeys act at 14:00. We
    expect the first to take the last slot and the second refused with the cap's reason,
    though it would have been allowed on its own; next-best-action after them likewise.
    A worker that restores the profile from the changelog decides the same."""
    now = local(BERLIN, 2027, 1, 15, 14)
    p = Profile("c1", timezone=BERLIN)
    p = contacted(p, "push", local(BERLIN, 2027, 1, 15, 9))
    p = contacted(p, "inapp", local(BERLIN, 2027, 1, 15, 11))

    alone = verdict(DEFAULT_POLICY, p, second_channel, now, "onboarding_tip")
    assert alone.allowed
    first = verdict(DEFAULT_POLICY, p, "email", now, "welcome_series")
    assert first.allowed
    p = accept(p, first)
    second = verdict(DEFAULT_POLICY, p, second_channel, now, "onboarding_tip")
    assert (second.allowed, second.reason) == (False, cap_reason)
    assert reason(DEFAULT_POLICY, p, "push", now, "product_recommendation") == "cap_total_day"
    restored = Profile.decode(p.encode())
    assert verdict(DEFAULT_POLICY, restored, second_channel, now, "onboarding_tip") == second


def test_accept_refuses_a_refused_verdict() -> None:
    p = Profile("c1", opted_out=("sms",))
    with pytest.raises(ValueError, match="no_consent"):
        accept(p, verdict(DEFAULT_POLICY, p, "sms", local("UTC", 2027, 1, 15, 12)))


def test_reasons_are_a_small_stable_set() -> None:
    assert REASONS == (
        "no_consent",
        "suppressed_outcome",
        "quiet_hours",
        "cap_channel_day",
        "cap_channel_week",
        "cap_total_day",
        "cap_total_week",
        "min_gap",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"channel_caps": {"push": Cap(2, 21)}},
        {"total_cap": Cap(-1, 3)},
        {"min_gap_s": -1},
        {"quiet_fallback": {"push": "sms"}},
        {"suppress_after": 4},
        {"suppress_for_s": 100 * 86_400},
        {"default_timezone": "Nowhere/Special"},
    ],
)
def test_a_policy_it_cannot_enforce_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(DEFAULT_POLICY, **changes)


# -- property: whatever is asked, what is accepted keeps every rule -------------------------

CHANNELS = ("email", "sms", "push", "inapp", "agent")
ZONES = ("UTC", BERLIN, NEW_YORK, "Asia/Kolkata")
START = local("UTC", 2027, 3, 20)  # a week before Europe's and after America's DST change


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    asks=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20 * 3600),
            st.sampled_from(CHANNELS),
            st.sampled_from(("marketing", "service")),
        ),
        max_size=60,
    ),
)
def test_an_accepted_sequence_never_breaks_a_cap_the_gap_or_quiet_hours(
    zone: str, asks: list[tuple[int, str, ActionClass]]
) -> None:
    policy = DEFAULT_POLICY
    p = Profile("c1", timezone=zone)
    tz = ZoneInfo(zone)
    now = START
    sent: list[tuple[int, str]] = []
    for step_s, channel, action_class in asks:
        now += step_s * 1000
        v = check(policy, p, "discount_offer", action_class, channel, now_ms=now)
        if v.allowed:
            p = accept(p, v)
            sent.append((now // 1000, v.channel))
    for i, (t, channel) in enumerate(sent):
        if i:
            assert t - sent[i - 1][0] >= policy.min_gap_s
        wall = datetime.fromtimestamp(t, tz)
        assert channel in policy.quiet_exempt or not in_quiet_hours(policy, wall.time())
        same_day = [c for u, c in sent if datetime.fromtimestamp(u, tz).date() == wall.date()]
        week = [c for u, c in sent if t - WEEK_S < u <= t]
        assert same_day.count(channel) <= policy.cap(channel).day
        assert week.count(channel) <= policy.cap(channel).week
        assert len(same_day) <= policy.total_cap.day
        assert len(week) <= policy.total_cap.week


@settings(max_examples=200)
@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(min_value=0, max_value=23),
    history=st.lists(
        st.tuples(st.integers(min_value=0, max_value=8 * 24), st.sampled_from(CHANNELS)),
        max_size=12,
    ),
    opted_out=st.lists(st.sampled_from(CHANNELS), max_size=2, unique=True),
)
def test_one_moment_answers_every_candidate_as_separate_checks_would(
    zone: str, hour: int, history: list[tuple[int, str]], opted_out: list[str]
) -> None:
    """Next-best-action asks one ``Moment`` about every candidate, and it works out quiet
    hours and each channel's caps once. Each verdict must equal a fresh ``check``, and
    ``refusal`` must be the verdict's reason, ``quiet_hours`` also where the verdict moved
    the contact to the quiet-hours fallback channel."""
    now = START + hour * HOUR_MS
    p = Profile("c1", timezone=zone, opted_out=tuple(opted_out))
    for hours_back, channel in history:
        p = record_contact(p, channel, now - hours_back * HOUR_MS)
    moment = Moment(DEFAULT_POLICY, p, now)
    for channel in CHANNELS * 2:  # asked twice: the second answers come from the caches
        for action_class in ("marketing", "service", "transactional"):
            v = moment.check("discount_offer", action_class, channel)
            assert v == check(
                DEFAULT_POLICY, p, "discount_offer", action_class, channel, now_ms=now
            )
            refused = moment.refusal("discount_offer", action_class, channel)
            assert refused == ("quiet_hours" if v.channel != channel else v.reason)


# -- the local day as epoch bounds -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (BERLIN, date(2027, 3, 28), 23),  # 02:00 -> 03:00
        (BERLIN, date(2027, 10, 31), 25),  # 03:00 -> 02:00
        ("America/Santiago", date(2026, 9, 6), 23),  # midnight skipped: the day starts 01:00
        ("America/Santiago", date(2026, 4, 4), 25),  # 24:00 -> 23:00, the day ends late
        ("Asia/Beirut", date(2026, 10, 24), 25),  # 24:00 -> 23:00
        ("Australia/Lord_Howe", date(2026, 10, 4), 23.5),  # a half-hour change
        ("UTC", date(2026, 6, 1), 24),
    ],
)
def test_day_bounds_hold_exactly_the_instants_of_the_local_day(
    zone: str, day: date, hours: float
) -> None:
    """The caps compare contact times with the day's bounds instead of each contact's
    local date: every second around both bounds must be on the day exactly when the
    zone's local date says so, on days a DST change shortens or lengthens too."""
    tz = ZoneInfo(zone)
    bounds = day_bounds(tz, day)
    assert bounds is not None
    start, end = bounds
    assert end - start == hours * 3600
    for edge in (start, end):
        for t in range(edge - 7200, edge + 7200):
            assert (start <= t < end) == (datetime.fromtimestamp(t, tz).date() == day)


def test_a_contact_a_second_before_local_midnight_is_on_the_day_before_on_a_dst_day() -> None:
    """On the 25-hour day a DST change makes (Berlin, 2027-10-31) a contact at 23:59:59
    the evening before does not count for the day cap; one at 00:00:00 does, all day."""
    policy = loose(channel_caps={"email": Cap(1, 20)})
    p = Profile("c1", timezone=BERLIN)
    before = contacted(p, "email", local(BERLIN, 2027, 10, 30, 23, 59, 59))
    at = contacted(p, "email", local(BERLIN, 2027, 10, 31, 0, 0, 0))
    late = local(BERLIN, 2027, 10, 31, 23, 59, 59)
    assert late - local(BERLIN, 2027, 10, 31, 0, 0, 0) == 25 * HOUR_MS - 1000
    assert reason(policy, before, "email", local(BERLIN, 2027, 10, 31, 0, 0, 0)) is None
    assert reason(policy, at, "email", late) == "cap_channel_day"
    assert reason(policy, at, "email", local(BERLIN, 2027, 11, 1, 0, 0, 0)) is None


def _reference(policy: ContactPolicy, p: Profile, channel: str, now_ms: int) -> str | None:
    """The rules after consent for a marketing contact, read straight off the module
    docstring: every contact's local date and distance, one by one."""
    if channel in p.opted_out:
        return "no_consent"
    zone = ZoneInfo(p.timezone or policy.default_timezone)
    now_s = now_ms // 1000
    today = datetime.fromtimestamp(now_s, zone).date()
    if in_quiet_hours(policy, datetime.fromtimestamp(now_s, zone).time()) and (
        channel not in policy.quiet_exempt
    ):
        return "quiet_hours"
    times = {ch: unpack(packed) for ch, packed in p.contacts.items()}

    def on_day(ts: list[int]) -> int:
        return sum(datetime.fromtimestamp(t, zone).date() == today for t in ts)

    def in_week(ts: list[int]) -> int:
        return sum(t > now_s - WEEK_S for t in ts)

    cap, mine = policy.cap(channel), times.get(channel, [])
    every = [t for ts in times.values() for t in ts]
    if on_day(mine) >= cap.day:
        return "cap_channel_day"
    if in_week(mine) >= cap.week:
        return "cap_channel_week"
    if on_day(every) >= policy.total_cap.day:
        return "cap_total_day"
    if in_week(every) >= policy.total_cap.week:
        return "cap_total_week"
    if any(abs(t - now_s) < policy.min_gap_s for t in every):
        return "min_gap"
    return None


_CAPS = st.builds(Cap, st.integers(0, 3), st.integers(0, 5))


@settings(max_examples=300)
@given(
    caps=st.dictionaries(st.sampled_from(CHANNELS), _CAPS, max_size=3),
    other=_CAPS,
    total=st.builds(Cap, st.integers(0, 4), st.integers(0, 8)),
    gap_h=st.integers(0, 3),
    zone=st.sampled_from(ZONES),
    hour=st.integers(min_value=0, max_value=23),
    history=st.lists(
        st.tuples(st.integers(min_value=0, max_value=8 * 24), st.sampled_from((*CHANNELS, "fax"))),
        max_size=8,
    ),
)
def test_a_moments_channel_table_matches_the_rules_read_contact_by_contact(
    caps: dict[str, Cap],
    other: Cap,
    total: Cap,
    gap_h: int,
    zone: str,
    hour: int,
    history: list[tuple[int, str]],
) -> None:
    """``Moment`` answers from a table per channel, the policy's own one for a customer
    with no contacts, kept per policy: under any caps (zero ones included), for a
    history empty or not, on a channel the policy names or one it does not ("fax",
    answered outside the table), each answer must be what the rules give contact by
    contact, and asking again must not change it."""
    policy = replace(
        DEFAULT_POLICY,
        channel_caps=FrozenDict({**DEFAULT_POLICY.channel_caps, **caps}),
        other_channel_cap=other,
        total_cap=total,
        min_gap_s=gap_h * 3600,
    )
    now = START + hour * HOUR_MS
    p = Profile("c1", timezone=zone)
    for hours_back, channel in history:
        p = record_contact(p, channel, now - hours_back * HOUR_MS)
    moment = Moment(policy, p, now)
    for channel in (*CHANNELS, "fax") * 2:
        expected = _reference(policy, p, channel, now)
        assert moment.refusal("discount_offer", "marketing", channel) == expected
        assert Moment(policy, p, now).refusal("discount_offer", "service", channel) == expected


@settings(max_examples=100)
@given(
    asks=st.lists(
        st.tuples(
            st.sampled_from(("", "Nowhere/Land", BERLIN, NEW_YORK, "Asia/Kolkata")),
            st.sampled_from(("UTC", "Asia/Tokyo")),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=12,
    )
)
def test_a_moments_local_time_is_the_zones_even_when_kept_from_an_earlier_moment(
    asks: list[tuple[str, str, int]],
) -> None:
    """``Moment.local`` keeps each zone name's last answer for the second it was asked:
    a later moment of that name, second and default zone gets it, any other gets its
    own (an unknown name's zone is the policy's default, so a policy with another
    default must not get the first one's)."""
    for name, default, second in asks:
        policy = replace(DEFAULT_POLICY, default_timezone=default)
        p = Profile("c1", timezone=name)
        now = START + second * 1000 + 7
        zone = ZoneInfo(name) if name in (BERLIN, NEW_YORK, "Asia/Kolkata") else ZoneInfo(default)
        assert Moment(policy, p, now).local() == (zone, datetime.fromtimestamp(now // 1000, zone))
