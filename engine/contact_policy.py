"""The contact policy: whether a customer may be contacted now, on this channel, with this.

Pure: a profile, one candidate contact and the time in, a verdict out
(``engine.contact_check``, which applies the rules below). All the
state it reads is the customer's own profile (consent, contact history, dismissals), so
caps hold across journeys, next-best-action and workers: one customer's decisions are
made one after another on one partition, and each accepted contact is in the profile
the next decision reads.

The rules, checked in this order; the first that fails is the verdict's reason (one of
:data:`REASONS`, a bounded set fit for a metric label):

1. ``no_consent``: the customer opted out of the channel, or unsubscribed or complained
   on it (``Profile.opted_out``). Binds every class, transactional included.
2. Transactional actions (an order confirmation, a password reset) pass the rest.
3. ``suppressed_outcome``: the customer dismissed this action ``suppress_after`` times
   within ``dismissal_window_s``; it is suppressed for ``suppress_for_s`` after the last
   of them, on every channel.
4. ``quiet_hours``: the channel is subject to quiet hours and it is quiet hours where the
   customer is. If the policy moves that channel's contacts to another one (push to
   in-app by default) and the rest of the rules allow that channel now, the verdict
   allows the contact *there* (``Verdict.channel``). Otherwise it is refused with
   ``defer_until_ms``, the first moment the quiet hours end: the caller may hold the
   action until then and ask again.
5. ``cap_channel_day``, ``cap_channel_week``, ``cap_total_day``, ``cap_total_week``:
   the contacts already made on the channel, or on all channels, that day or that week.
6. ``min_gap``: another contact, on any channel, less than ``min_gap_s`` away.

Time is the customer's local time: the profile's ``timezone``, or the policy's
``default_timezone`` for a customer without one (or with a name this host's tz database
does not know). "A day" is the local calendar day, midnight to midnight, which is what
a customer perceives ("three messages today"); on a day a DST change shortens or
lengthens, the day is 23 or 25 hours. "A week" is the last seven days (168 hours),
rolling: no seven consecutive days ever hold more than the weekly cap, where a calendar
week would allow twice the cap across a Sunday night. The history the caps count
(``engine.contacts``) keeps exactly those seven days.

Every accepted contact counts towards the caps and the gap of the ones after it,
transactional ones included: the customer gets every message. A transactional contact
is counted like the others; it is just never refused for what came before.

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Literal, NamedTuple, get_args

from engine import contacts, dismissals
from engine.frozen import FrozenDict
from engine.local_time import zone_named

DAY_S = 86_400
WEEK_S = 7 * DAY_S

Reason = Literal[
    "no_consent",
    "suppressed_outcome",
    "quiet_hours",
    "cap_channel_day",
    "cap_channel_week",
    "cap_total_day",
    "cap_total_week",
    "min_gap",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
"""Every reason a contact can be refused, in the order the rules are checked."""


class Cap(NamedTuple):
    """Most contacts per local calendar day, and per rolling seven days."""

    day: int
    week: int


_AS_EMAIL = Cap(1, 3)
_TOTAL = Cap(3, 10)


def _channel_caps() -> Mapping[str, Cap]:
    caps = {
        # Inboxes fill up: one a day, three a week keeps a brand out of the spam folder.
        "email": _AS_EMAIL,
        # A text interrupts and may cost the customer; carriers flag frequent senders.
        "sms": Cap(1, 2),
        # Push is cheap to ignore but quick to get the app's notifications turned off.
        "push": Cap(2, 5),
        # In-app is only seen while the customer is in the app and asked for nothing.
        "inapp": Cap(3, 10),
        # A person calls or writes: rare, and the agents' time is the scarce thing.
        "agent": Cap(1, 2),
    }
    return FrozenDict(caps)  # DEFAULT_POLICY's must not change under its users


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """How often, and when, a customer may be contacted. The defaults are a cautious
    start for a retail brand; each says why it is what it is. A catalogue's
    ``contact_policy`` section changes them (``engine.contact_config``), so a new policy
    is published like a journey, and every worker switches to it without a restart."""

    channel_caps: Mapping[str, Cap] = field(default_factory=_channel_caps)
    """Per channel, most contacts per local day and per week. A week cap may be at most
    ``engine.contacts.MAX_CONTACTS`` (20): the history keeps no more per channel."""
    other_channel_cap: Cap = _AS_EMAIL
    """The cap of a channel ``channel_caps`` does not name: as cautious as email."""
    total_cap: Cap = _TOTAL
    """Most contacts over all channels: three a day and ten a week is about where
    unsubscribe rates start to climb, whatever mix of channels carries them."""
    min_gap_s: int = 3_600
    """Least time between two contacts on any channel: two messages within the hour read
    as one too many, and the second one's effect cannot be told from the first's."""
    quiet_start: time = time(21, 0)
    """Local time quiet hours begin. With ``quiet_end`` before it, the window wraps
    midnight; equal to ``quiet_end``, there are no quiet hours."""
    quiet_end: time = time(8, 0)
    """Local time quiet hours end: the first moment a deferred contact may go out."""
    quiet_exempt: frozenset[str] = frozenset({"inapp"})
    """Channels quiet hours do not apply to: in-app messages are only seen when the
    customer opens the app, so they never wake anyone."""
    quiet_fallback: Mapping[str, str] = field(default_factory=lambda: FrozenDict({"push": "inapp"}))
    """Channels whose contacts move to another channel in quiet hours instead of waiting
    for the morning: a push that would buzz at night is shown in the app instead, where
    the customer sees it if they are using it (a push is about now; by the morning it is
    stale). Every other channel's contact is deferred to ``quiet_end``: an email or a
    text still reads well in the morning, and an agent calls in office hours. The
    fallback must be exempt from quiet hours. The move does not depend on the channels
    the action lists: the caller sends the contact where ``Verdict.channel`` says."""
    suppress_after: int = 2
    """Dismissals of one action, within ``dismissal_window_s``, that suppress it. One
    dismissal is noise (a busy moment); two within a month is an answer."""
    dismissal_window_s: int = 30 * DAY_S
    suppress_for_s: int = 60 * DAY_S
    """How long the action stays suppressed after the dismissal that reached the count:
    two months, long enough for the customer's situation to change."""
    default_timezone: str = "UTC"
    """IANA name of the time zone of a customer whose profile names none."""

    def __post_init__(self) -> None:
        caps = [*self.channel_caps.values(), self.other_channel_cap, self.total_cap]
        if any(c.day < 0 or c.week < 0 for c in caps):
            raise ValueError("caps must not be negative")
        if max(c.week for c in (*self.channel_caps.values(), self.other_channel_cap)) > (
            contacts.MAX_CONTACTS
        ):
            raise ValueError(f"a channel's week cap must be at most {contacts.MAX_CONTACTS}")
        if not 0 <= self.min_gap_s <= contacts.WINDOW_S:
            raise ValueError(f"min_gap_s must be between 0 and {contacts.WINDOW_S}")
        for channel, fallback in self.quiet_fallback.items():
            if fallback == channel or fallback not in self.quiet_exempt:
                raise ValueError(f"{channel}'s fallback {fallback} must be exempt from quiet hours")
        if not 1 <= self.suppress_after <= dismissals.MAX_PER_ACTION:
            raise ValueError(f"suppress_after must be between 1 and {dismissals.MAX_PER_ACTION}")
        if self.dismissal_window_s + self.suppress_for_s > dismissals.WINDOW_S:
            raise ValueError(
                "dismissal_window_s + suppress_for_s must be at most "
                f"{dismissals.WINDOW_S} s: the profile forgets dismissals older than that"
            )
        if zone_named(self.default_timezone) is None:
            raise ValueError(f"unknown time zone {self.default_timezone!r}")

    def cap(self, channel: str) -> Cap:
        return self.channel_caps.get(channel, self.other_channel_cap)


DEFAULT_POLICY = ContactPolicy()
