"""Which decision earned what: outcomes and purchases matched to the decisions a customer's
profile holds open, and the lessons they teach the policy.

A decision that acts is held open (``hold``; at most ``engine.profile.MAX_PENDING`` per
customer) for the attribution window after it was made (its ``decided_at_ms``), measured
against the event time of the customer's later records. ``settle`` runs on every record
applied to the customer, timer nudges included, and closes decisions like this:

=====================================================  ==================================
what arrives                                           what the decision teaches
=====================================================  ==================================
``clicked`` or ``converted`` with its ``decision_id``  reward 1 (kind ``outcome``)
``dismissed``, ``bounced``, ``unsubscribed``,          reward 0 (``outcome``)
``complained`` with its ``decision_id``
``delivered`` or ``opened``                            nothing yet: it stays open
``order_placed`` (a purchase, no decision id)          reward 1 to the customer's most
                                                       recent open marketing decision,
                                                       clicked ones first; the order's
                                                       ``amount`` is its revenue
                                                       (``purchase``)
any record after the decision's window                 reward 0, dropped (``expired``)
a decision beyond the memory's four                    the oldest held: reward 0,
                                                       dropped (``evicted``)
=====================================================  ==================================

A click teaches reward 1 at once, but the decision stays held, marked ``rewarded``, until
its window ends or a ``converted`` or a purchase closes it: the purchase a click leads to
is then credited to the decision clicked, not to a later one, and teaches nothing twice.

An outcome that arrives after its decision's window teaches nothing more: the decision
expires (reward 0) and the outcome is counted as late. If an earlier record of the
customer had already expired it, the outcome finds no decision held, like one for a
decision already closed, and is not counted as late: the profile keeps no trace of
decisions it has let go.

Every lesson is learned from the feature snapshot stored with the decision
(``engine.pending.lesson``). A journey's decision keeps no features: it is settled the
same way and its revenue counted, but it teaches the model nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.actions import Action
from engine.dedup import short_hash
from engine.journeys import Catalogue
from engine.pending import Pending, lesson
from engine.profile import Profile, remember
from models.policy import Policy
from topics.events import Event

REWARDS: dict[str, float] = {
    "clicked": 1.0,
    "converted": 1.0,
    "dismissed": 0.0,
    "bounced": 0.0,
    "unsubscribed": 0.0,
    "complained": 0.0,
}
"""Outcomes that settle a decision, and the reward each teaches. Others keep it open."""

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Closed:
    """A held decision that a record settled."""

    item: Pending
    kind: str
    """outcome, purchase, expired or evicted."""
    reward: float
    revenue: float = 0.0


@dataclass(frozen=True, slots=True)
class Lesson:
    """What one settled decision taught."""

    kind: str
    arm: str
    reward: float
    revenue: float
    log_loss: float | None
    """The model's loss on this lesson, scored before it learned from it; None when the
    model learned nothing (a journey's decision, features stored under other names, or
    a decision already taught by its click)."""


@dataclass(frozen=True, slots=True)
class Settled:
    profile: Profile
    closed: tuple[Closed, ...] = ()
    late: int = 0
    """Outcomes for a decision still held but past its window."""


def settle(
    p: Profile, ev: Event, *, window_ms: int, marketing: Callable[[Pending], bool]
) -> Settled:
    """The profile with the decisions ``ev`` settles taken out (see the module docstring),
    and what they teach. ``marketing`` tells which held decisions a purchase may credit.

    >>> from engine.profile import Profile
    >>> held = Pending("k1", "a:email", (), None, False, "m", at_ms=0)
    >>> ev = Event("web", "search", "e1", "c1", 3 * DAY_MS + 1, {})
    >>> s = settle(Profile("c1", pending=(held,)), ev, window_ms=3 * DAY_MS, marketing=bool)
    >>> s.profile.pending, [(c.kind, c.reward) for c in s.closed]
    ((), [('expired', 0.0)])
    """
    if not p.pending:
        return Settled(p)
    t = ev.time_ms
    held = list(p.pending)
    closed: list[Closed] = []
    late = 0
    if ev.source == "outcome":
        key = short_hash(str(ev.data["decision_id"]))
        item = next((x for x in held if x.key == key), None)
        if item is not None and t > item.at_ms + window_ms:
            late = 1  # expired below, with the others past their window
        elif item is not None and ev.type in REWARDS:
            reward = REWARDS[ev.type]
            if ev.type == "clicked" and not item.rewarded:
                held[held.index(item)] = replace(item, rewarded=True)
            else:
                held.remove(item)
            closed.append(Closed(item, "outcome", reward))
    elif ev.source == "purchase" and ev.type == "order_placed":
        candidates = [x for x in held if t <= x.at_ms + window_ms and marketing(x)]
        clicked = [x for x in candidates if x.rewarded]
        if candidates:
            item = (clicked or candidates)[-1]
            held.remove(item)
            amount = float(ev.data.get("amount") or 0.0)
            closed.append(Closed(item, "purchase", 1.0, amount))
    return _closing(p, held, closed, t, window_ms, late)


def expire(p: Profile, at_ms: int, *, window_ms: int) -> Settled:
    """The profile without the decisions whose window has passed at ``at_ms`` (a timer
    nudge's time), and what they teach: reward 0 each."""
    if not p.pending:
        return Settled(p)
    return _closing(p, list(p.pending), [], at_ms, window_ms, 0)


def _closing(
    p: Profile, held: list[Pending], closed: list[Closed], t: int, window_ms: int, late: int
) -> Settled:
    for x in [x for x in held if t > x.at_ms + window_ms]:
        held.remove(x)
        closed.append(Closed(x, "expired", 0.0))
    if not closed:
        return Settled(p, late=late)
    # A customer's conversions count decisions, not outcomes: a click and the purchase
    # that follows are one.
    converted = sum(c.reward >= 0.5 and not c.item.rewarded for c in closed)
    profile = replace(p, pending=tuple(held), conversions=p.conversions + converted)
    return Settled(profile, tuple(closed), late)


def is_marketing(item: Pending, actions: Sequence[Action], catalogue: Catalogue) -> bool:
    """Whether a held decision is a marketing one: a next-best-action decision by its
    action's class in ``actions``, a journey's by its journey's class."""
    if item.act:
        journey = item.act.split(":", 1)[0]
        return any(j.id == journey and j.journey_class == "marketing" for j in catalogue.journeys)
    action = item.arm.split(":", 1)[0]
    return any(a.action_id == action and a.action_class == "marketing" for a in actions)


def hold(p: Profile, item: Pending) -> tuple[Profile, tuple[Closed, ...]]:
    """Hold ``item`` open, and the decisions that fall out of the memory for it (each
    teaches reward 0: an answer may still come, but the profile has no room to wait)."""
    kept = remember(p, item)
    gone = len(p.pending) + 1 - len(kept.pending)
    return kept, tuple(Closed(x, "evicted", 0.0) for x in p.pending[:gone])


def teach(policy: Policy, closed: tuple[Closed, ...]) -> list[Lesson]:
    """Teach ``policy`` what the ``closed`` decisions earned, each from the features it
    was decided on; the lessons, for the decision log's metrics.

    A decision its click already taught teaches nothing more; it is a lesson here only
    when a purchase brought revenue to it.
    """
    out: list[Lesson] = []
    for c in closed:
        if c.item.rewarded:
            if c.revenue:
                out.append(Lesson(c.kind, c.item.arm, 1.0, c.revenue, None))
            continue
        taught = lesson(c.item)
        loss = None
        if taught is not None:
            x, arm = taught
            # Scored before learning from it: the online (progressive) log loss.
            loss = log_loss(policy.score_many(x, [arm])[arm], c.reward)
            policy.learn_one(x, arm, c.reward)
        out.append(Lesson(c.kind, c.item.arm, c.reward, c.revenue, loss))
    return out


def log_loss(p: float, y: float) -> float:
    """Binary log loss of propensity ``p`` for reward ``y``, clipped so a confident miss
    costs at most about 34.5 (p = 1e-15) instead of infinity.

    >>> round(log_loss(0.8, 1.0), 4), round(log_loss(0.8, 0.0), 4)
    (0.2231, 1.6094)
    """
    p = min(max(p, 1e-15), 1 - 1e-15)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))
