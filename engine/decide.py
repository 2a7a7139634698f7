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

from engine import contact_check
from engine.actions import Action
from engine.expr import Expr
from engine.expr_eval import Run
from engine.frozen import assembled
from engine.journeys import Catalogue
from engine.orchestrate import catalogue_version, event_doc
from engine.profile import Profile
from engine.profile_view import view
from models.explore import EpsilonGreedy
from models.features import features
from models.policy import Policy
from topics.decisions import NO_ACTION, Candidate, Decision, decision_id, kept_encoded
from topics.events import Event

STEP = "nba"
"""The journey step name of next-best-action decisions; part of every decision id."""
HOLDOUT = "holdout"
OPEN_TICKET = "open_support_ticket"
STAGE = "stage"
DECIDE_READS = frozenset({"web_events"})
"""What ``decide`` reads of the profile's view itself, beyond the conditions: a feature."""


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
    ``view(p, ev.time_ms)`` (at least the fields ``cat`` reads, and ``DECIDE_READS``)
    when the caller has them already (the pipeline works each out once per event)."""
    did = decision_id(p.customer_id, ev.source, ev.event_id, STEP)
    if holdout is None:
        holdout = in_holdout(p.customer_id, cfg)
    now = ev.time_ms
    profile = view(p, now) if profile_view is None else profile_view
    x = features(p, ev, web_events=profile["web_events"])
    plan = _plan(cat)
    ctx: dict[str, Any] = {"profile": profile, "now": now}  # ``event`` when read, below
    # ``stage_of(cat, profile, now)`` inline, on the rules' context: a stage's condition
    # reads only ``profile`` and ``now`` (the catalogue checks it), which it holds too.
    stage: str | None = None
    for holds, name in plan.stages:
        if holds(ctx) is True:
            stage = name
            break
    refusal = contact_check.Moment(cat.contact, p, now).refusal
    tickets = bool(p.open_tickets)
    whys: list[str | None] = []
    eligible: list[_Arm] = []
    for own in plan.actions:
        # The action's own rules, which hold on all its channels, in the order of step 2
        # above. Inline, like the stage above, and with the reasons of a decision that
        # excludes every arm formed once per plan: ~8,800 instructions less a decision
        # (callgrind, decide with its encoding, 257,900 before with the explorer's).
        if own.marketing and holdout:
            why: str | None = HOLDOUT
        elif own.stages and stage not in own.stages:
            why = STAGE
        elif own.marketing and tickets:
            why = OPEN_TICKET
        else:
            why = None
            for name, holds, reads_event in own.when:  # ``Action.failed``; most have none
                if reads_event and "event" not in ctx:
                    # Built for the first condition that reads it: most read only the
                    # profile, and the payload's copy cost ~8,000 instructions (callgrind).
                    ctx["event"] = event_doc(ev)
                if holds(ctx) is not True:
                    why = name
                    break
        if why is not None:
            whys += [why] * len(own.arms)
            continue
        action_id, action_class = own.action.action_id, own.action.action_class
        for arm in own.arms:
            # In quiet hours the policy may move the contact to another channel: that
            # channel's own candidates are weighed instead, so this one is refused either way.
            refused = refusal(action_id, action_class, arm.channel)
            whys.append(refused)
            if refused is None:
                eligible.append(arm)
    chosen: _Arm | None = None
    score: float | None = None
    explored = False
    propensity = 1.0
    if not eligible:
        # Most decision points: every candidate excluded, for the same few reasons.
        key = tuple(whys)
        candidates = plan.known.get(key) or plan.excluded(key)
        reasons = plan.quiet[holdout]
    else:
        scores = policy.score_many(x, [arm.arm for arm in eligible])
        scored = {arm.arm: _Scored(arm, scores[arm.arm]) for arm in eligible}
        service = [arm.arm for arm in eligible if arm.action.action_class != "marketing"]
        pool = service or list(scored)
        best = scored[max(pool, key=lambda arm: (scored[arm].priority, arm))]
        greedy = best.arm.arm if best.score >= cfg.min_score else None
        # Service actions are not explored: a customer who needs help gets the best help.
        explorer = EpsilonGreedy(0.0 if service else cfg.exploration_rate)
        choice = explorer.choose(pool, greedy, seed=did)
        explored, propensity = choice.explored, choice.propensity
        if explored:
            said = "explored: random eligible action"
        elif choice.arm is None:
            said = f"best score {best.score:.3f} below min_score {cfg.min_score}"
        else:
            said = "service action first" if service else "highest priority"
        if choice.arm is not None:
            taken = scored[choice.arm]
            chosen, score = taken.arm, taken.candidate.score
        counted = plan.counted[len(eligible)]
        reasons = (counted, HELD, said) if holdout else (counted, said)
        candidates = tuple(
            _excluded(arm.action.action_id, arm.channel, why)
            if why is not None
            else scored[arm.arm].candidate
            for arm, why in zip(plan.arms, whys, strict=True)
        )
    # Every field, in field order (``assembled``; the unit tests check the order).
    return assembled(
        Decision,
        {
            "decision_id": did,
            "customer_id": p.customer_id,
            "event_id": ev.event_id,
            "event_source": ev.source,
            "event_type": ev.type,
            "event_time_ms": now,
            "action": NO_ACTION if chosen is None else chosen.action.action_id,
            "channel": None if chosen is None else chosen.channel,
            "action_class": None if chosen is None else chosen.action.action_class,
            "score": score,
            "explored": explored,
            "reasons": reasons,
            "model_version": policy.version,
            "candidates": candidates,
            "features": x,
            "decided_at_ms": now_ms,
            "journey": None,
            "catalogue_version": plan.catalogue_version,
            "stage": stage,
            # 1.0 for a choice no draw could change, the commonest: rounding leaves it so.
            "propensity": 1.0 if propensity == 1.0 else round(propensity, 6),
            "holdout": holdout,
        },
    )


HELD = "holdout group: no marketing actions"
"""A reason of every decision for a customer in the holdout group."""


@dataclass(frozen=True, slots=True)
class _Arm:
    """One (action, channel) pair next-best-action weighs, with its levers' weight."""

    arm: str
    action: Action
    channel: str
    weight: float


@dataclass(frozen=True, slots=True)
class _Own:
    """An action's own rules, as ``decide`` reads them, with the action's arms."""

    action: Action
    marketing: bool
    stages: tuple[str, ...]
    when: tuple[tuple[str, Run, bool], ...]
    """The action's named conditions, each with its compiled ``run`` and whether it reads
    ``event`` (a context goes without it until a condition does)."""
    arms: tuple[_Arm, ...]


class _Plan:
    """What ``decide`` needs of a catalogue beyond the catalogue itself, worked out once
    per catalogue, not per decision (the arms' names, split again and again, and their
    weights were a tenth of what ``decide`` itself cost)."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat
        self.arms = tuple(
            _Arm(f"{a.action_id}:{ch}", a, ch, cat.levers.weight(a.action_id, ch))
            for a in cat.actions
            if a.next_best_action
            for ch in a.channels
        )
        """Every arm, in catalogue order: the order of a decision's candidates."""
        self.actions = tuple(
            _Own(
                a,
                a.action_class == "marketing",
                a.stages,
                tuple((name, rule.run, _reads_event(rule)) for name, rule in a.when),
                tuple(arm for arm in self.arms if arm.action is a),
            )
            for a in cat.actions
            if a.next_best_action
        )
        """The arms again, by action, with the action's own rules."""
        self.stages = tuple((stage.when.run, stage.name) for stage in cat.lifecycle)
        """The lifecycle stages' conditions and names (``stage_of``)."""
        self.counted = tuple(f"eligible {n} of {len(self.arms)}" for n in range(len(self.arms) + 1))
        """A decision's first reason, by its number of eligible arms (formatted once)."""
        self.quiet = {
            False: (self.counted[0], "no eligible action"),
            True: (self.counted[0], HELD, "no eligible action"),
        }
        """The reasons of a decision without an eligible arm, by holdout."""
        self.catalogue_version = catalogue_version(cat)
        self.known: dict[tuple[str | None, ...], tuple[Candidate, ...]] = {}
        """``excluded``'s answers so far, for a lookup without a call."""

    def excluded(self, whys: tuple[str | None, ...]) -> tuple[Candidate, ...]:
        """The candidates of a decision that excluded every arm, the ``i``-th for the
        reason ``whys[i]``: one tuple per combination of reasons, most decisions being
        one of a few dozen, kept up to a bound (a catalogue of many arms could make many
        more)."""
        found = self.known.get(whys)
        if found is None:
            if len(self.known) >= _MOST_EXCLUSIONS:
                self.known.clear()
            made: list[Candidate] = []
            for arm, why in zip(self.arms, whys, strict=True):
                assert why is not None, "an eligible arm has a score"
                made.append(_excluded(arm.action.action_id, arm.channel, why))
            found = self.known[whys] = kept_encoded(tuple(made))
        return found


def _reads_event(rule: Expr) -> bool:
    """Whether ``rule`` reads the triggering event.

    >>> from engine.expr import compile_expr
    >>> roots = {"profile", "event", "now"}
    >>> _reads_event(compile_expr("contains(event.name, 'support.')", roots=roots))
    True
    >>> _reads_event(compile_expr("len(profile.cart) > 0 or days_since(now) > 1", roots=roots))
    False
    """
    return any(path.split(".")[0] == "event" for path in rule.paths())


_MOST_EXCLUSIONS = 4096
_PLAN: list[_Plan] = []


def _plan(cat: Catalogue) -> _Plan:
    """The plan of ``cat``, kept for the one catalogue in force."""
    if not _PLAN or _PLAN[0].cat is not cat:
        _PLAN[:] = [_Plan(cat)]
    return _PLAN[0]


class _Scored:
    """An eligible arm with the policy's score, its priority and its candidate entry."""

    __slots__ = ("arm", "candidate", "priority", "score")

    def __init__(self, arm: _Arm, score: float) -> None:
        self.arm, self.score = arm, score
        self.priority = score * arm.action.value * arm.weight
        rounded = round(score, 6)
        self.candidate = assembled(
            Candidate,
            {
                "action": arm.action.action_id,
                "channel": arm.channel,
                "eligible": True,
                "excluded_by": None,
                "score": rounded,
                # Equal to the score when the action's value and weight are 1, the
                # commonest case: rounded once (a round to 6 decimals is a
                # float-to-decimal conversion).
                "priority": rounded if self.priority == score else round(self.priority, 6),
            },
        )


@lru_cache(maxsize=4096)
def _excluded(action: str, channel: str, why: str) -> Candidate:
    """An excluded candidate. Most candidates of most decisions are excluded, and for the
    same few reasons: being immutable, one object per (action, channel, reason) serves
    them all, at the cost of a cache lookup instead of building one each time."""
    return Candidate(action=action, channel=channel, eligible=False, excluded_by=why)
