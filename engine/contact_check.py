"""The contact policy (``engine.contact_policy``, where the rules are written down)
applied: a profile, one candidate contact and the time in, a :class:`Verdict` out.

How it is wired, per customer and moment (``now_ms`` the deciding event's time, or
the journey timer's wake time):

1. For each candidate ``(action, class, channel)``, ``check(policy, profile, ...)``.
   A refused candidate is excluded with ``verdict.reason`` (the decision log's
   ``excluded_by`` and the suppressions-by-reason metric); a journey act tries its
   channels in order and takes the first allowed one.
2. For the contact that goes out, ``profile = accept(profile, verdict)`` before the
   next candidate of the same moment is checked: the second of two journeys acting on
   one event, or next-best-action after a journey, then sees the slot the first took.
   The contact goes out on ``verdict.channel``.
3. A ``quiet_hours`` refusal says when the channel opens again: a journey may set a
   timer for ``defer_until_ms`` and check again then; next-best-action has no timers
   and simply takes another candidate or stays quiet.

>>> from engine.contact_policy import DEFAULT_POLICY
>>> from engine.profile import Profile
>>> p = Profile("c1", timezone="Europe/Berlin")
>>> nine = 1_800_000_000_000  # 2027-01-15 09:00 in Berlin
>>> first = check(DEFAULT_POLICY, p, "discount_offer", "marketing", "email", now_ms=nine)
>>> first.allowed, first.channel
(True, 'email')
>>> p = accept(p, first)
>>> check(DEFAULT_POLICY, p, "cart_reminder", "marketing", "email", now_ms=nine).reason
'cap_channel_day'
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from engine import contacts, dismissals
from engine.actions import ActionClass
from engine.contact_policy import WEEK_S, Cap, ContactPolicy, Reason
from engine.frozen import FrozenDict
from engine.local_time import customer_zone, day_bounds, in_quiet_hours, quiet_hours_end_ms
from engine.profile import Profile
from engine.profile_updates import record_contact
from topics.catalogue import CHANNELS


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says about one candidate contact at one moment."""

    action: str
    channel: str
    """Where the contact may go out: the candidate's channel or, in quiet hours, the
    channel the policy moves it to (``ContactPolicy.quiet_fallback``)."""
    at_ms: int
    """The moment checked, and the contact's time once accepted."""
    reason: Reason | None = None
    """None when the contact is allowed."""
    defer_until_ms: int | None = None
    """With ``quiet_hours``: when the candidate's channel is out of quiet hours."""

    @property
    def allowed(self) -> bool:
        return self.reason is None


def check(
    policy: ContactPolicy,
    p: Profile,
    action: str,
    action_class: ActionClass,
    channel: str,
    *,
    now_ms: int,
) -> Verdict:
    """The verdict on contacting ``p`` with ``action`` of ``action_class`` on ``channel``
    at ``now_ms`` (epoch milliseconds), by the rules in the module docstring."""
    return Moment(policy, p, now_ms).check(action, action_class, channel)


class Moment:
    """One customer at one moment, for checking several candidate contacts: the local
    time and the contact counts are worked out once, when the first check needs them
    (a decision weighs eight or so candidates against the same history), and with them
    every channel's quiet-hours-or-cap answer, which no action changes (``_situate``).
    Then a candidate costs its own rules (consent, class, dismissals) and one lookup."""

    __slots__ = ("_counts", "_limits", "_local", "_overall", "_quiet", "now_ms", "p", "policy")
    _counts: Mapping[str, tuple[int, int]]
    _overall: Reason | None
    _quiet: bool

    def __init__(self, policy: ContactPolicy, p: Profile, now_ms: int) -> None:
        self.policy, self.p, self.now_ms = policy, p, now_ms
        self._local: tuple[ZoneInfo, datetime] | None = None
        # ``_situate`` sets ``_quiet``, ``_counts`` and ``_overall`` with ``_limits``.
        self._limits: Mapping[str, Reason | None] | None = None

    def check(self, action: str, action_class: ActionClass, channel: str) -> Verdict:
        policy, p, now_ms = self.policy, self.p, self.now_ms
        reason = self.refusal(action, action_class, channel)
        if reason != "quiet_hours":
            return Verdict(action, channel, now_ms, reason)
        # The fallback takes the contact if the customer may be contacted there now.
        fallback = policy.quiet_fallback.get(channel)
        if fallback is not None and fallback not in p.opted_out and self.limit(fallback) is None:
            return Verdict(action, fallback, now_ms)
        zone, local = self.local()
        until = quiet_hours_end_ms(policy, local, zone)
        return Verdict(action, channel, now_ms, "quiet_hours", defer_until_ms=until)

    def refusal(self, action: str, action_class: ActionClass, channel: str) -> Reason | None:
        """The first rule that refuses the contact on ``channel`` itself, or None: what
        ``check`` says before it looks for a quiet-hours fallback, without building a
        verdict (next-best-action weighs each channel's candidates on their own)."""
        p = self.p
        if channel in p.opted_out:
            return "no_consent"
        if action_class == "transactional":
            return None
        # Most customers dismissed nothing: no call to find that out per candidate.
        if p.dismissals and suppressed_until_ms(self.policy, p, action, self.now_ms) is not None:
            return "suppressed_outcome"
        limits = self._limits
        if limits is None:
            limits = self._situate()
        if channel in limits:
            return limits[channel]
        return self._rule(channel, self._quiet)  # a channel no policy or catalogue names

    def _situate(self) -> Mapping[str, Reason | None]:
        """Quiet hours, the counts, and from them the answer of the rules after the
        action's own for every channel the policy knows, in one loop rather than a
        method call or two per channel asked (four or so per decision). A customer no
        one contacted this week, the commonest, gets the policy's own table for an empty
        history, built once per policy (``_known``). With the table in plain dicts, the
        policy's part of a decision point of ``core_throughput --workload decide`` (a
        ``Moment`` and its five or so ``refusal`` calls, replayed under callgrind) takes
        32,800 instructions where a ``_Usage`` and a channel's answer worked out on
        first asking took 42,300. Quiet hours and the table by their own functions
        (``in_quiet_hours``, ``_known``), not written out here: 28,500 against 26,900,
        kept for one place each."""
        policy, p = self.policy, self.p
        zone, local = self._local or self.local()
        quiet = self._quiet = in_quiet_hours(policy, local.time())
        known = _known(policy)
        if not p.contacts:
            self._counts, self._overall = _NO_COUNTS, known.idle_overall
            self._limits = known.idle[quiet]
            return self._limits
        counts, overall = _usage(policy, p, self.now_ms, local.date(), zone)
        self._counts, self._overall = counts, overall
        exempt = policy.quiet_exempt
        # ``_answer`` for each channel, written out: a call per channel cost 6,800
        # instructions per moment more (callgrind replay, 35,100 against 28,300).
        limits: dict[str, Reason | None] = {}
        for channel, cap in known.caps.items():
            if quiet and channel not in exempt:
                limits[channel] = "quiet_hours"
                continue
            day, week = counts.get(channel, _NOTHING)
            limits[channel] = (
                "cap_channel_day"
                if day >= cap.day
                else "cap_channel_week"
                if week >= cap.week
                else overall
            )
        self._limits = limits
        return limits

    def _rule(self, channel: str, quiet: bool) -> Reason | None:
        """Quiet hours (when ``quiet``), then the caps and the gap on ``channel``."""
        if self._limits is None:
            self._situate()
        policy = self.policy
        day, week = self._counts.get(channel, _NOTHING)
        return _answer(
            channel, policy.cap(channel), day, week, quiet, policy.quiet_exempt, self._overall
        )

    def quiet(self) -> bool:
        """Whether the moment is in the customer's quiet hours."""
        if self._limits is None:
            self._situate()
        return self._quiet

    def limit(self, channel: str) -> Reason | None:
        """The cap or gap that refuses a contact on ``channel``, quiet hours or not."""
        return self._rule(channel, False)

    def local(self) -> tuple[ZoneInfo, datetime]:
        """The customer's zone and local time (``customer_zone``). The decision points
        of one second in one zone share them: a zone's last answer is kept for its name
        (``_CLOCKS``), and asked again for the same second it takes a lookup: a
        ``Moment`` and its ``refusal`` calls (callgrind replay, as in ``_situate``) cost
        28,500 instructions where ``customer_zone`` and ``datetime.fromtimestamp`` per
        moment had them at 32,800."""
        if self._local is None:
            now_s, name, default = (
                self.now_ms // 1000,
                self.p.timezone,
                self.policy.default_timezone,
            )
            last = _CLOCKS.get(name)
            if last is not None and last[0] == now_s and last[1] == default:
                self._local = last[2]
            else:
                zone = customer_zone(self.policy, self.p)
                self._local = zone, datetime.fromtimestamp(now_s, zone)
                if len(_CLOCKS) >= _MAX_CLOCKS:  # names come from events: any string
                    _CLOCKS.clear()
                _CLOCKS[name] = now_s, default, self._local
        return self._local


_CLOCKS: dict[str | None, tuple[int, str, tuple[ZoneInfo, datetime]]] = {}
"""Per profile ``timezone`` name: the second, the policy's ``default_timezone`` (the zone
of a customer without a known name) and ``Moment.local``'s answer for them."""
_MAX_CLOCKS = 1024


def accept(p: Profile, verdict: Verdict) -> Profile:
    """``p`` after the contact ``verdict`` allowed went out: recorded on its channel at
    its time, so every later check counts it."""
    if not verdict.allowed:
        raise ValueError(f"{verdict.action} on {verdict.channel} was refused: {verdict.reason}")
    return record_contact(p, verdict.channel, verdict.at_ms)


def suppressed_until_ms(policy: ContactPolicy, p: Profile, action: str, now_ms: int) -> int | None:
    """When the suppression of ``action`` for ``p`` ends (epoch milliseconds), or None when
    it is not suppressed at ``now_ms``: ``suppress_after`` dismissals within
    ``dismissal_window_s`` suppress it for ``suppress_for_s`` after the last of them."""
    packed = p.dismissals.get(action)
    if not packed:
        return None
    now_s, n = now_ms // 1000, policy.suppress_after
    seen = [t for t in dismissals.times(packed) if t <= now_s]
    ends = [
        last + policy.suppress_for_s
        for first, last in zip(seen, seen[n - 1 :], strict=False)
        if last - first <= policy.dismissal_window_s and now_s < last + policy.suppress_for_s
    ]
    return max(ends) * 1000 if ends else None


_NOTHING = (0, 0)
_NO_COUNTS: Mapping[str, tuple[int, int]] = FrozenDict()  # only read by ``.get``


def _usage(
    policy: ContactPolicy, p: Profile, now_ms: int, today: date, zone: ZoneInfo
) -> tuple[dict[str, tuple[int, int]], Reason | None]:
    """The contacts that count at one moment: per channel, those of the local day and of
    the seven days back; and ``cap_total_day``, ``cap_total_week`` or ``min_gap``, the
    first that refuses a contact on any channel, or None (the same for every channel:
    worked out once, as summing the counts per channel cost ~6k instructions per
    decision point).

    Counts every contact of the local day ``today``, and of the seven days back from
    ``now_ms``. A contact recorded after ``now_ms`` (the decision of a later event,
    made before this late one) counts too: any seven days holding this contact hold at
    most what those counts hold, so no week goes over the cap. An event more than a few
    days late may not see every contact of its week: the history keeps seven days back
    from the newest contact."""
    now_s = now_ms // 1000
    week_start = now_s - WEEK_S
    gap = policy.min_gap_s
    bounds = day_bounds(zone, today)
    counts: dict[str, tuple[int, int]] = {}
    total_day = total_week = 0
    close = False
    for ch, packed in p.contacts.items():
        # The history is sorted (``engine.contacts``): each count is two bisections,
        # and the contacts nearest ``now_s`` are the two either side of it. A channel's
        # one contact, the commonest history, is packed as its own time: not unpacked.
        times: Sequence[int] = packed if len(packed) == 1 else contacts.unpack(packed)
        n = len(times)
        if bounds is not None:
            on_day = bisect_left(times, bounds[1]) - bisect_left(times, bounds[0])
        else:
            on_day = sum([datetime.fromtimestamp(t, zone).date() == today for t in times])
        in_week = n - bisect_right(times, week_start)
        counts[ch] = on_day, in_week
        total_day += on_day
        total_week += in_week
        if not close:
            i = bisect_left(times, now_s)
            close = (i < n and times[i] - now_s < gap) or (i > 0 and now_s - times[i - 1] < gap)
    return counts, _overall(policy, total_day, total_week, close)


def _answer(
    channel: str,
    cap: Cap,
    day: int,
    week: int,
    quiet: bool,
    exempt: Collection[str],
    overall: Reason | None,
) -> Reason | None:
    """The rules after an action's own on ``channel``, in their order: quiet hours (when
        ``quiet``, unless the channel is ``exempt``), the channel's caps on its ``day`` and
        ``week`` counts, then ``overall`` (the totals and the gap, the same for every
        channel). ``_known``'s tables and ``Moment._rule`` call it; ``Moment._situate`` has it
    written out, for its cost."""
    if quiet and channel not in exempt:
        return "quiet_hours"
    if day >= cap.day:
        return "cap_channel_day"
    if week >= cap.week:
        return "cap_channel_week"
    return overall


def _overall(policy: ContactPolicy, day: int, week: int, close: bool) -> Reason | None:
    if day >= policy.total_cap.day:
        return "cap_total_day"
    if week >= policy.total_cap.week:
        return "cap_total_week"
    return "min_gap" if close else None


class _Known(NamedTuple):
    """What a policy says before any history is read, worked out once per policy."""

    caps: Mapping[str, Cap]
    """The cap of every channel the catalogue knows or the policy names."""
    idle: tuple[Mapping[str, Reason | None], Mapping[str, Reason | None]]
    """Out of and in quiet hours, each channel's answer for a customer with no contacts."""
    idle_overall: Reason | None


_KNOWN: dict[int, tuple[ContactPolicy, _Known]] = {}


def _known(policy: ContactPolicy) -> _Known:
    """``policy``'s ``_Known``, kept by the policy's id with the policy itself, so the id
    cannot be another object's while its entry is kept (a dict of policies would hash
    every field per decision point). A catalogue publishes few policies; each new
    one past 64 starts the memo afresh."""
    entry = _KNOWN.get(id(policy))
    if entry is not None and entry[0] is policy:
        return entry[1]
    caps = {ch: policy.cap(ch) for ch in (*CHANNELS, *policy.channel_caps)}
    overall = _overall(policy, 0, 0, False)
    # Plain dicts, private to this module and never changed: a ``FrozenDict``'s ``in``
    # and ``[]`` go through its Python-level slots, ~700 instructions each.
    idle = [
        {
            ch: _answer(ch, cap, 0, 0, quiet, policy.quiet_exempt, overall)
            for ch, cap in caps.items()
        }
        for quiet in (False, True)
    ]
    known = _Known(caps, (idle[0], idle[1]), overall)
    if len(_KNOWN) >= 64:
        _KNOWN.clear()
    _KNOWN[id(policy)] = policy, known
    return known
