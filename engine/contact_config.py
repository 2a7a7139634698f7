"""The ``contact_policy`` section of a catalogue: the contact rules as data.

Every key is optional; what a catalogue leaves out keeps the default of
:class:`engine.contact_policy.ContactPolicy`, where each default says why it is what it
is::

    contact_policy:
      caps:                              # per channel: most per local day, per 7 days
        email: {day: 1, week: 3}
        push: {day: 2, week: 5}
      other_channels: {day: 1, week: 3}  # a channel caps does not name (default: email's)
      total: {day: 3, week: 10}          # over every channel
      min_gap: 1h                        # least time between two contacts, any channel (0s: none)
      quiet_hours:
        start: "21:00"                   # customer-local; start after end wraps midnight
        end: "08:00"
        exempt: [inapp]                  # channels quiet hours do not apply to
        fallback: {push: inapp}          # moved there in quiet hours instead of deferred
      suppression: {after: 2, within: 30d, for: 60d}   # dismissals of one action
      default_timezone: UTC              # for customers whose profile names no zone

A channel named under ``caps`` gets exactly the caps written there; the channels it does
not name keep their defaults. A policy the engine could not enforce (a weekly cap above
what the contact history keeps, a fallback that is itself quiet at night) is a problem
reported at the section, like any other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml

from engine.contact_policy import DEFAULT_POLICY, Cap, ContactPolicy
from engine.frozen import FrozenDict
from engine.journey_checks import NodeReader
from topics.catalogue import CHANNELS

_KEYS = (
    "caps",
    "other_channels",
    "total",
    "min_gap",
    "quiet_hours",
    "suppression",
    "default_timezone",
)
_MAX_CAP = 1000


def read_contact_policy(r: NodeReader, node: yaml.Node) -> ContactPolicy | None:
    f = r.mapping(node, "contact_policy", (), _KEYS)
    if f is None:
        return None
    changes: dict[str, Any] = {}
    ok = True
    if "caps" in f:
        caps = dict(DEFAULT_POLICY.channel_caps)
        for key, value in r.pairs(f["caps"], "caps") or []:
            channel = r.choice(key, "channel", CHANNELS)
            cap = _cap(r, value, f"the caps of {key.value}")
            if channel is None or cap is None:
                ok = False
            else:
                caps[channel] = cap
        changes["channel_caps"] = FrozenDict(caps)
    for key, name in (("other_channels", "other_channel_cap"), ("total", "total_cap")):
        if key in f:
            changes[name] = cap = _cap(r, f[key], key)
            ok = ok and cap is not None
    if "min_gap" in f:
        gap = r.duration(f["min_gap"], "min_gap", allow_zero=True)
        changes["min_gap_s"] = gap // 1000 if gap is not None else None
        ok = ok and gap is not None
    if "quiet_hours" in f:
        ok = _quiet_hours(r, f["quiet_hours"], changes) and ok
    if "suppression" in f:
        ok = _suppression(r, f["suppression"], changes) and ok
    if "default_timezone" in f:
        changes["default_timezone"] = zone = r.string(f["default_timezone"], "default_timezone")
        ok = ok and zone is not None
    if not ok:
        return None
    try:
        return replace(DEFAULT_POLICY, **changes)
    except ValueError as err:  # ContactPolicy checks what it can enforce
        r.report(node, f"contact_policy: {err}")
        return None


def _cap(r: NodeReader, node: yaml.Node, what: str) -> Cap | None:
    f = r.mapping(node, what, ("day", "week"))
    if f is None:
        return None
    day = r.integer(f.get("day"), f"{what}: day", 0, _MAX_CAP)
    week = r.integer(f.get("week"), f"{what}: week", 0, _MAX_CAP)
    return Cap(day, week) if day is not None and week is not None else None


def _quiet_hours(r: NodeReader, node: yaml.Node, changes: dict[str, Any]) -> bool:
    f = r.mapping(node, "quiet_hours", (), ("start", "end", "exempt", "fallback"))
    if f is None:
        return False
    ok = True
    for key in ("start", "end"):
        if key in f:
            changes[f"quiet_{key}"] = at = r.time_of_day(f[key], f"quiet_hours {key}")
            ok = ok and at is not None
    if "exempt" in f:
        items = r.sequence(f["exempt"], "exempt") or []
        exempt = [r.choice(item, "channel", CHANNELS) for item in items]
        changes["quiet_exempt"] = frozenset(c for c in exempt if c)
        ok = ok and None not in exempt
    if "fallback" in f:
        moves: dict[str, str] = {}
        for key, value in r.pairs(f["fallback"], "fallback") or []:
            src = r.choice(key, "channel", CHANNELS)
            dst = r.choice(value, "channel", CHANNELS)
            if src is None or dst is None:
                ok = False
            else:
                moves[src] = dst
        changes["quiet_fallback"] = FrozenDict(moves)
    return ok


def _suppression(r: NodeReader, node: yaml.Node, changes: dict[str, Any]) -> bool:
    f = r.mapping(node, "suppression", (), ("after", "within", "for"))
    if f is None:
        return False
    ok = True
    if "after" in f:
        changes["suppress_after"] = n = r.integer(f["after"], "suppression after", 1, None)
        ok = n is not None
    for key, name in (("within", "dismissal_window_s"), ("for", "suppress_for_s")):
        if key in f:
            ms = r.duration(f[key], f"suppression {key}")
            changes[name] = ms // 1000 if ms is not None else None
            ok = ok and ms is not None
    return ok
