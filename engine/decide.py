"""The decide step: eligibility, contact policy, scoring, exploration and arbitration.

1. Every (action, channel) of the catalogue's next-best-action actions is a candidate.
2. Named rules exclude candidates, the first that fails is recorded: ``holdout`` (the
   customer is in the holdout group and the action is marketing), ``stage`` (the action
   is for other lifecycle stages), ``open_support_ticket`` (no marketing while a ticket
   is open), the action's own conditions by name, then the contact policy
   (``engine.contact_policy``: consent, outcome suppression, quiet hours, caps, gap).
   In quiet hours a candidate is excluded even where the policy would move its contact
   to another channel: next-best-action weighs that channel's own candidates instead.
3. Service actions outrank marketing: a customer who needs help gets help, not an offer.
4. The policy scores the eligible candidates; priority = propensity x business value x
   the levers' weight for the action and channel (``engine.actions.Levers``).
5. The explorer (``models.explore``) takes the highest priority, or stays quiet below
   ``min_score``, or explores; its draw is seeded by the decision id, so a replay makes
   the same choice, and the decision records the exact probability of its choice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine import contact_policy
from engine.actions import Action
from engine.journeys import Catalogue, stage_of
from engine.orchestrate import catalogue_version, event_doc
from engine.profile import Profile, view
from models.explore import EpsilonGreedy
from models.features import features
from models.policy import Policy
from topics.decisions import NO_ACTION, Candidate, Decision, decision_id
from topics.events import Event

STEP = "nba"
"""The journey step name of next-best-action decisions; part of every decision id."""
HOLDOUT = "holdout"
OPEN_TICKET = "open_support_ticket"
STAGE = "stage"


@dataclass(frozen=True, slots=True)
class DecideConfig:
    exploration_rate: float = 0.1
    min_score: float = 0.0
    holdout_share: float = 0.0
    """Share of customers, by a stable hash of their id, who get no marketing actions."""
    holdout_salt: str = "segue"
    """Mixed into the hash: a new salt draws a new holdout group."""


def in_holdout(customer_id: str, cfg: DecideConfig) -> bool:
    """Whether the customer is in the holdout group: the same answer on every worker and
    after every restart, and a larger share only adds customers to the group.

    >>> cfg = DecideConfig(holdout_share=0.1)
    >>> sum(in_holdout(f"c{i}", cfg) for i in range(10_000))
    986
    """
    if cfg.holdout_share <= 0.0:
        return False
    digest = hashlib.blake2b(f"{cfg.holdout_salt}\x1f{customer_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < cfg.holdout_share


def group_of(customer_id: str, cfg: DecideConfig) -> str:
    """The customer's experiment group, ``holdout`` or ``treated``, as metrics and the
    demo's report name it."""
    return HOLDOUT if in_holdout(customer_id, cfg) else "treated"


def decide(
    p: Profile,
    ev: Event,
    policy: Policy,
    cfg: DecideConfig,
    cat: Catalogue,
    *,
    now_ms: int,
    holdout: bool | None = None,
    profile_view: dict[str, Any] | None = None,
) -> Decision:
    """The decision for ``ev`` under catalogue ``cat``, with the feature snapshot it was
    scored on and the customer's lifecycle stage, which it records and checks.
    ``holdout`` is ``in_holdout`` of the customer and ``profile_view`` is
    ``view(p, ev.time_ms)`` when the caller has them already (the pipeline works each
    out once per event)."""
    did = decision_id(p.customer_id, ev.source, ev.event_id, STEP)
    x = features(p, ev)
    if holdout is None:
        holdout = in_holdout(p.customer_id, cfg)
    profile = view(p, ev.time_ms) if profile_view is None else profile_view
    stage = stage_of(cat, profile, ev.time_ms) if cat.lifecycle else None
    ctx = {"profile": profile, "event": event_doc(ev), "now": ev.time_ms}
    moment = contact_policy.Moment(cat.contact, p, ev.time_ms)
    arms = _arms(cat)
    exclusions: dict[str, str | None] = {}
    why: str | None = None
    last: Action | None = None
    for arm in arms.values():
        if arm.action is not last:  # an action's own rules hold on all its channels
            last = arm.action
            why = _rules(p, last, ctx, stage=stage, holdout=holdout)
        # In quiet hours the policy may move the contact to another channel: that
        # channel's own candidates are weighed instead, so this one is refused either way.
        exclusions[arm.arm] = (
            why
            if why is not None
            else moment.refusal(last.action_id, last.action_class, arm.channel)
        )
    eligible = [arm for arm, why in exclusions.items() if why is None]
    scores = policy.score_many(x, eligible) if eligible else {}
    priority = {arm: scores[arm] * arms[arm].action.value * arms[arm].weight for arm in eligible}

    service = [arm for arm in eligible if arms[arm].action.action_class != "marketing"]
    pool = service or eligible
    chosen: str | None = None
    explored = False
    propensity = 1.0
    reasons: list[str] = [f"eligible {len(eligible)} of {len(arms)}"]
    if holdout:
        reasons.append("holdout group: no marketing actions")
    if not pool:
        reasons.append("no eligible action")
    else:
        best = max(pool, key=lambda arm: (priority[arm], arm))
        greedy = best if scores[best] >= cfg.min_score else None
        # Service actions are not explored: a customer who needs help gets the best help.
        explorer = EpsilonGreedy(0.0 if service else cfg.exploration_rate)
        choice = explorer.choose(pool, greedy, seed=did)
        chosen, explored, propensity = choice.arm, choice.explored, choice.propensity
        if explored:
            reasons.append("explored: random eligible action")
        elif chosen is None:
            reasons.append(f"best score {scores[best]:.3f} below min_score {cfg.min_score}")
        else:
            reasons.append("service action first" if service else "highest priority")

    candidates = tuple(
        _excluded(arms[arm].action.action_id, arms[arm].channel, why)
        if why is not None
        else Candidate(
            action=arms[arm].action.action_id,
            channel=arms[arm].channel,
            eligible=True,
            score=round(scores[arm], 6),
            priority=round(priority[arm], 6),
        )
        for arm, why in exclusions.items()
    )
    action, channel = NO_ACTION, None
    if chosen is not None:
        action, channel = arms[chosen].action.action_id, arms[chosen].channel
    return Decision(
        decision_id=did,
        customer_id=p.customer_id,
        event_id=ev.event_id,
        event_source=ev.source,
        event_type=ev.type,
        event_time_ms=ev.time_ms,
        action=action,
        channel=channel,
        action_class=arms[chosen].action.action_class if chosen else None,
        score=round(scores[chosen], 6) if chosen else None,
        explored=explored,
        reasons=tuple(reasons),
        model_version=policy.version,
        candidates=candidates,
        features=x,
        decided_at_ms=now_ms,
        catalogue_version=catalogue_version(cat),
        stage=stage,
        propensity=round(propensity, 6),
        holdout=holdout,
    )


@dataclass(frozen=True, slots=True)
class _Arm:
    """One (action, channel) pair next-best-action weighs, with its levers' weight."""

    arm: str
    action: Action
    channel: str
    weight: float


_ARMS: dict[int, tuple[Catalogue, dict[str, _Arm]]] = {}


def _arms(cat: Catalogue) -> dict[str, _Arm]:
    """The arms of ``cat`` by ``action:channel``, in catalogue order: worked out once per
    catalogue, not per decision (their names, split again and again, and their weights
    were a tenth of what ``decide`` itself cost). Keyed by the catalogue's identity,
    kept for the one catalogue in force."""
    hit = _ARMS.get(id(cat))
    if hit is None or hit[0] is not cat:
        arms = [
            _Arm(f"{a.action_id}:{ch}", a, ch, cat.levers.weight(a.action_id, ch))
            for a in cat.actions
            if a.next_best_action
            for ch in a.channels
        ]
        hit = (cat, {arm.arm: arm for arm in arms})
        _ARMS.clear()
        _ARMS[id(cat)] = hit
    return hit[1]


@lru_cache(maxsize=4096)
def _excluded(action: str, channel: str, why: str) -> Candidate:
    """An excluded candidate. Most candidates of most decisions are excluded, and for the
    same few reasons: being immutable, one object per (action, channel, reason) serves
    them all, at the cost of a cache lookup instead of building one each time."""
    return Candidate(action=action, channel=channel, eligible=False, excluded_by=why)


def _rules(
    p: Profile, action: Action, ctx: dict[str, Any], *, stage: str | None, holdout: bool
) -> str | None:
    """The first of the action's own rules that excludes it, on every channel."""
    marketing = action.action_class == "marketing"
    if marketing and holdout:
        return HOLDOUT
    if action.stages and stage not in action.stages:
        return STAGE
    if marketing and p.open_tickets:
        return OPEN_TICKET
    return action.failed(ctx)
