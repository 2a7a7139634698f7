"""The decide step: eligibility, scoring, exploration and arbitration for one event.

1. Every (action, channel) of the catalogue is a candidate.
2. Named rules exclude candidates: consent, an open support ticket for marketing, and
   each action's own conditions. The first rule that fails is recorded.
3. Service actions outrank marketing: a customer who needs help gets help, not an offer.
4. The policy scores the eligible candidates; priority is propensity x business value.
5. With probability ``exploration_rate`` an eligible candidate is drawn at random
   instead. The draw is seeded by the decision id, so a replay makes the same choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.actions import DEFAULT_ACTIONS, Action
from engine.profile import Profile
from models.explore import EpsilonGreedy
from models.features import features
from models.policy import Policy
from topics.decisions import NO_ACTION, Candidate, Decision, decision_id
from topics.events import Event

STEP = "nba"
"""The journey step name of next-best-action decisions; part of every decision id."""


@dataclass(frozen=True, slots=True)
class DecideConfig:
    exploration_rate: float = 0.1
    min_score: float = 0.0
    actions: tuple[Action, ...] = DEFAULT_ACTIONS


def decide(
    p: Profile,
    ev: Event,
    policy: Policy,
    cfg: DecideConfig,
    *,
    now_ms: int,
    catalogue_version: str | None = None,
    stage: str | None = None,
) -> Decision:
    """The decision for ``ev``, with the feature snapshot it was scored on;
    ``catalogue_version`` and ``stage`` (the customer's lifecycle stage) are recorded."""
    did = decision_id(p.customer_id, ev.source, ev.event_id, STEP)
    x = features(p, ev)
    by_arm = {f"{a.action_id}:{c}": a for a in cfg.actions for c in a.channels}
    exclusions = {arm: _excluded_by(p, ev, a, arm.split(":", 1)[1]) for arm, a in by_arm.items()}
    eligible = [arm for arm, why in exclusions.items() if why is None]
    scores = policy.score_many(x, eligible) if eligible else {}
    priority = {arm: scores[arm] * by_arm[arm].value for arm in eligible}

    service = [arm for arm in eligible if by_arm[arm].action_class != "marketing"]
    pool = service or eligible
    chosen: str | None = None
    explored = False
    propensity = 1.0
    reasons: list[str] = [f"eligible {len(eligible)} of {len(by_arm)}"]
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
        Candidate(
            action=by_arm[arm].action_id,
            channel=arm.split(":", 1)[1],
            eligible=why is None,
            excluded_by=why,
            score=None if why is not None else round(scores[arm], 6),
            priority=None if why is not None else round(priority[arm], 6),
        )
        for arm, why in exclusions.items()
    )
    action, channel = chosen.split(":", 1) if chosen else (NO_ACTION, None)
    decision = Decision(
        decision_id=did,
        customer_id=p.customer_id,
        event_id=ev.event_id,
        event_source=ev.source,
        event_type=ev.type,
        event_time_ms=ev.time_ms,
        action=action,
        channel=channel,
        action_class=by_arm[chosen].action_class if chosen else None,
        score=round(scores[chosen], 6) if chosen else None,
        explored=explored,
        reasons=tuple(reasons),
        model_version=policy.version,
        candidates=candidates,
        features=x,
        decided_at_ms=now_ms,
        catalogue_version=catalogue_version,
        stage=stage,
        propensity=round(propensity, 6),
    )
    return decision


def _excluded_by(p: Profile, ev: Event, action: Action, channel: str) -> str | None:
    # Consent binds every class, transactional included.
    if channel in p.opted_out:
        return "no_consent"
    if action.action_class == "marketing" and p.open_tickets:
        return "open_support_ticket"
    for name, rule in action.requires:
        if not rule(p, ev):
            return name
    return None
