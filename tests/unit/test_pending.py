"""What a pending decision keeps: enough to learn from and to re-send, in little space."""

from __future__ import annotations

from dataclasses import replace

import orjson

from engine.decide import DecideConfig, decide
from engine.dedup import short_hash
from engine.journey_loader import default_actions, default_catalogue
from engine.pending import RESENT, Pending, lesson, resend
from engine.profile import Profile
from models.features import NAMES
from models.policy import LogisticHeads
from topics.decisions import Decision
from topics.events import Event

NOW = 1_800_000_000_000
CLASSES = {a.action_id: a.action_class for a in default_actions()}


def decided(eid: str = "e1") -> tuple[Event, Decision]:
    ev = Event("web", "product_view", eid, "c1", NOW - 5, {"product_id": "p1"})
    profile = Profile("c1", tier="gold", cart={"p1": 12.5}, counts={"web.product_view": 3})
    cfg = DecideConfig(exploration_rate=1.0)
    d = decide(profile, ev, LogisticHeads(), cfg, default_catalogue(), now_ms=NOW)
    assert d.acts
    return ev, d


def test_the_learner_gets_the_arm_and_the_features_scored() -> None:
    _, d = decided()
    p = Pending.of(d)
    assert lesson(p) == (d.features, f"{d.action}:{d.channel}")
    assert p.key == short_hash(d.decision_id) and p.x == tuple(d.features[n] for n in NAMES)


def test_features_stored_under_other_names_are_not_learned_from() -> None:
    p = Pending.of(decided()[1])
    assert lesson(replace(p, layout=p.layout ^ 1)) is None
    assert lesson(replace(p, x=p.x[:-1])) is None


def test_a_resent_decision_is_the_original_without_its_explanation() -> None:
    ev, d = decided()
    again = resend(Pending.of(d), d.decision_id, "c1", ev, CLASSES)
    assert again.reasons == (RESENT,) and again.candidates == ()
    assert again.propensity is None
    explained = {"reasons": d.reasons, "candidates": d.candidates, "propensity": d.propensity}
    # The shell stamps the catalogue in force on a re-sent decision (engine/pipeline.py).
    stamped = {"catalogue_version": d.catalogue_version, "stage": d.stage}
    assert replace(again, **explained, **stamped) == d


def test_a_pending_decision_is_stored_in_an_eighth_of_the_record() -> None:
    _, d = decided()
    stored = orjson.dumps(Pending.of(d).to_list())
    assert len(stored) <= len(d.encode()) // 8
    assert Pending.load(orjson.loads(stored)) == Pending.of(d)
    assert Pending.load(orjson.loads(orjson.dumps(Pending.of(d)))) == Pending.of(d)


def test_a_pending_decision_of_the_earlier_form_keeps_its_arm_and_loses_its_features() -> None:
    _, d = decided()
    old = {"decision_id": d.decision_id, "event_id": "e1", "record": d.to_dict()}
    old["record"]["features"] = {"bias": 1.0, "log_web_events": 1.1}
    p = Pending.load(old)
    assert (p.key, p.arm, p.x) == (short_hash(d.decision_id), f"{d.action}:{d.channel}", ())
    assert (p.score, p.explored, p.model, p.at_ms) == (d.score, True, d.model_version, NOW)
    assert lesson(p) is None
