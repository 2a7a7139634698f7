"""Which actions a customer dismissed lately: what an outcome-based suppression counts.

Per action id, the times (epoch seconds) of its latest dismissals, for the contact
policy (``engine.contact_policy``) to decide whether the action is suppressed for this
customer. Bounds, and why:

- ``WINDOW_S`` = 120 days: a dismissal matters while it can open a run of dismissals
  (the policy's dismissal window after it) and while the suppression that run starts
  lasts (the policy's suppression period after the run's last one): 30 + 60 = 90 days
  with the policy's defaults, and a month of room to configure longer ones.
- ``MAX_PER_ACTION`` = 3: the most dismissals a suppression rule may count (the default
  counts 2). Older ones only matter if the customer dismissed the action again while it
  was suppressed, which only a late outcome can report.
- ``MAX_ACTIONS`` = 8: the actions dismissed most recently; an action whose latest
  dismissal is the oldest goes first. The catalogue has ten actions, and a customer
  who dismissed eight of them lately has told us enough.

As in ``engine.contacts``, the window is measured back from the newest dismissal of any
action, not from a clock, and times are packed as the oldest one and the gaps. A customer
who never dismissed anything stores nothing; one action dismissed twice costs 51 bytes of
encoded profile, field name included; the bound, eight of the catalogue's longest action
ids dismissed three times each, about 380.

>>> m = add(add({}, "discount_offer", 1_800_000_000), "discount_offer", 1_800_086_400)
>>> m, times(m["discount_offer"])
({'discount_offer': (1800000000, 86400)}, [1800000000, 1800086400])
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.contacts import pack, unpack

DAY_S = 86_400
WINDOW_S = 120 * DAY_S
MAX_PER_ACTION = 3
MAX_ACTIONS = 8

Memory = Mapping[str, tuple[int, ...]]


def add(memory: Memory, action: str, time_s: int) -> dict[str, tuple[int, ...]]:
    """``memory`` with a dismissal of ``action`` at ``time_s``, pruned to the bounds."""
    by_action = {a: unpack(packed) for a, packed in memory.items()}
    by_action[action] = sorted([*by_action.get(action, []), time_s])
    horizon = max(t[-1] for t in by_action.values() if t) - WINDOW_S
    kept = {a: [x for x in t if x > horizon][-MAX_PER_ACTION:] for a, t in by_action.items()}
    newest_first = sorted((a for a, t in kept.items() if t), key=lambda a: -kept[a][-1])
    return {a: pack(kept[a]) for a in sorted(newest_first[:MAX_ACTIONS])}


def times(packed: tuple[int, ...]) -> list[int]:
    """The dismissal times, oldest first."""
    return unpack(packed)
