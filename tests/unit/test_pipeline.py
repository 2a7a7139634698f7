"""The record-level core: dead letters, decisions, replays and learning, without Kafka."""

from __future__ import annotations

import math
from dataclasses import replace

import orjson
import pytest

from engine import pipeline
from engine.attribution import is_marketing
from engine.decide import DecideConfig, in_holdout
from engine.journey_loader import default_catalogue
from engine.journeys import Catalogue
from engine.pending import RESENT, Pending
from engine.pipeline import Core, Limits
from engine.profile import Profile
from engine.records import Record, expected_partition
from engine.result import Result
from models.policy import LogisticHeads
from topics.catalogue import TopicNames
from topics.deadletter import reason_of

NOW = 1_800_028_800_000
"""2027-01-15 16:00 UTC: daytime for a customer with no time zone, so quiet hours
(21:00-08:00 local) do not refuse the contacts of events a few hours before it."""
HOUR = 3_600_000
NAMES = TopicNames("cx.")


class Harness:
    """The core with dict-backed tables, standing in for the worker's Faust tables."""

    def __init__(
        self,
        partitions: int = 0,
        catalogue: Catalogue | None = None,
        cfg: DecideConfig | None = None,
    ) -> None:
        self.profiles: dict[str, Profile] = {}
        self.identities: dict[str, str] = {}
        self.timers: dict[str, int] = {}
        self.catalogue = catalogue or default_catalogue()
        self.policy = LogisticHeads()
        self.core = Core(
            self.policy,
            NAMES,
            identity_topic="app-identity",
            stitched_topic="app-stitched",
            timer_topic="app-timers",
            cfg=cfg or DecideConfig(exploration_rate=0.0),
            limits=Limits(partitions=partitions),
        )
        self.offset = 0
        self.now = NOW
        """The worker's clock."""

    def profile(self, key: str) -> Profile | None:
        return self.profiles.get(key)

    def linked(self, anonymous_id: str) -> str | None:
        return self.identities.get(anonymous_id)

    def send(self, source: str, value: bytes | None, key: bytes | None = b"c1") -> Result:
        self.offset += 1
        rec = Record(f"cx.{source}", 0, self.offset, key, value, [("trace", b"x")])
        return self.run(rec)

    def run(self, rec: Record) -> Result:
        step = {
            "app-identity": self.core.link,
            "app-stitched": self.core.stitched,
            "app-timers": self.core.tick,
        }.get(rec.topic, self.core.ingest)
        result = step(rec, self, now_ms=self.now)
        for key, profile in result.writes.items():
            if profile is None:
                self.profiles.pop(key, None)
            else:
                self.profiles[key] = profile
        self.identities.update(result.links)
        for key, wake in result.timers.items():
            if wake is None:
                self.timers.pop(key, None)
            else:
                self.timers[key] = wake
        return result

    def tick(self, now_ms: int, key: str = "c1") -> Result:
        """A nudge from the worker's clock, as engine/app.py sends one."""
        self.offset += 1
        value = orjson.dumps({"customer_id": key, "now_ms": now_ms})
        return self.run(Record("app-timers", 0, self.offset, key.encode(), value))

    def deliver(self, result: Result) -> list[Result]:
        """Run the forwarded records a result sent, as the worker's other agents would."""
        self.offset += 1
        return [
            self.run(Record(s.topic, 0, self.offset, s.key, s.value))
            for s in result.sends
            if s.topic.startswith("app-")
        ]


def event(etype: str, eid: str, **data: object) -> bytes:
    doc = {"event_id": eid, "customer_id": "c1", "type": etype, "time": NOW, **data}
    return orjson.dumps(doc)


def test_rejected_record_becomes_one_dead_letter_with_original_bytes() -> None:
    h = Harness()
    result = h.send("web", b"{oops")
    assert result.status == "rejected" and result.writes == {}
    [dlq] = result.sends
    assert (dlq.topic, dlq.key, dlq.value) == ("cx.dlq", b"c1", b"{oops")
    assert dlq.headers[0] == ("trace", b"x")
    why = reason_of(dlq.headers)
    assert why["segue.error.class"] == "malformed_json"
    assert (why["segue.source.topic"], why["segue.source.offset"]) == ("cx.web", "1")


def test_decision_goes_to_log_and_channel_with_cloudevents_headers() -> None:
    h = Harness()
    result = h.send("web", event("product_view", "e1", product_id="p1"))
    assert result.status == "decided" and result.decision is not None
    topics = [s.topic for s in result.sends]
    assert topics == ["cx.decisions.log", f"cx.decisions.{result.decision.channel}"]
    headers = dict(result.sends[0].headers)
    assert headers["ce_id"] == result.decision.decision_id.encode()
    assert orjson.loads(result.sends[1].value or b"")["event_id"] == "e1"


def test_non_trigger_event_only_updates_the_profile() -> None:
    h = Harness()
    result = h.send("web", event("page_view", "e1"))
    assert result.status == "applied" and result.sends == []
    assert h.profiles["c1"].counts == {"web.page_view": 1}


def test_replayed_offset_is_not_applied_twice_and_re_emits_its_decision() -> None:
    h = Harness()
    value = event("add_to_cart", "e1", product_id="p1", price=5.0)
    rec = Record("cx.web", 0, 42, b"c1", value)
    first = h.run(rec)
    again = h.run(rec)
    assert again.status == "replayed" and again.writes == {}
    assert h.profiles["c1"].counts == {"web.add_to_cart": 1}
    assert [(s.topic, s.headers) for s in again.sends] == [
        (s.topic, s.headers) for s in first.sends
    ]
    # The same decision, without its explanation: engine.pending keeps no candidates.
    original = orjson.loads(first.sends[0].value or b"")
    resent = orjson.loads(again.sends[0].value or b"")
    assert resent["candidates"] == [] and resent["reasons"] == [RESENT]
    explanation = ("candidates", "reasons", "propensity")
    unexplained = {k: v for k, v in original.items() if k not in explanation}
    assert {k: v for k, v in resent.items() if k not in explanation} == unexplained
    assert resent["propensity"] is None
    assert again.sends[1].value == again.sends[0].value


def test_an_answered_decision_teaches_once_when_its_window_has_passed() -> None:
    h = Harness()
    decided = h.send("web", event("product_view", "e1", product_id="p1"))
    assert decided.decision is not None
    did = decided.decision.decision_id
    assert h.send("outcome", event("delivered", "o1", decision_id=did)).status == "applied"
    answered = h.send("outcome", event("converted", "o2", decision_id=did))
    assert answered.status == "applied" and answered.lessons == [] and h.policy.updates == 0
    assert h.profiles["c1"].conversions == 1
    after = h.now = NOW + h.core.limits.attribution_window_ms + 1
    learned = h.send("web", event("page_view", "e2", time=after))
    [taught] = learned.lessons
    assert learned.status == "learned" and (taught.kind, taught.reward) == ("outcome", 1.0)
    # An untaught head scores 0.5, and the loss is taken before learning: -ln 0.5.
    assert taught.log_loss == pytest.approx(math.log(2))
    assert h.policy.updates == 1 and h.profiles["c1"].pending == ()
    late = h.send("outcome", event("dismissed", "o3", decision_id=did, time=after))
    assert late.status == "applied" and late.lessons == [] and h.policy.updates == 1


def test_a_replayed_outcome_teaches_nothing_twice() -> None:
    h = Harness()
    decided = h.send("web", event("product_view", "e1", product_id="p1"))
    assert decided.decision is not None
    after = h.now = NOW + h.core.limits.attribution_window_ms + 1
    rec = Record("cx.web", 0, 99, b"c1", event("page_view", "e2", time=after))
    assert h.run(rec).status == "learned" and h.policy.updates == 1
    assert h.run(rec).status == "replayed" and h.policy.updates == 1


def test_a_decision_that_acts_is_a_contact_on_its_channel_at_the_event_time() -> None:
    h = Harness()
    acted = h.send("web", event("product_view", "e1", product_id="p1", time=NOW - 3 * HOUR))
    assert acted.decision is not None and acted.decision.channel is not None
    assert h.profiles["c1"].contacts == {acted.decision.channel: ((NOW - 3 * HOUR) // 1000,)}
    # An agent follow-up, past the contact policy's minimum gap of an hour.
    h.send("support", event("ticket_opened", "s1", ticket_id="t1", time=NOW - HOUR))
    quiet = h.send("web", event("product_view", "e2", product_id="p1"))
    assert quiet.decision is not None and not quiet.decision.acts
    assert sorted(h.profiles["c1"].contacts) == sorted({acted.decision.channel, "agent"})


def test_an_outcome_for_a_decision_stored_by_the_previous_version_closes_it_unlearned() -> None:
    """Scenario: a profile written before the compact pending form holds a decision whose
    features used other names. We expect it to leave, answered, without teaching."""
    h = Harness()
    decided = h.send("web", event("product_view", "e1", product_id="p1"))
    assert decided.decision is not None
    did = decided.decision.decision_id
    old = {"decision_id": did, "event_id": "e1", "record": decided.decision.to_dict()}
    old["record"]["features"] = {"bias": 1.0}
    h.profiles["c1"] = replace(h.profiles["c1"], pending=(Pending.load(old),))
    h.send("outcome", event("converted", "o1", decision_id=did))
    after = h.now = NOW + h.core.limits.attribution_window_ms + 1
    closed = h.send("web", event("page_view", "e2", time=after))
    assert closed.status == "applied" and h.policy.updates == 0
    assert [x.kind for x in closed.lessons] == ["outcome"] and closed.lessons[0].log_loss is None
    assert h.profiles["c1"].pending == ()


def test_open_ticket_customer_gets_no_marketing_until_resolved() -> None:
    h = Harness()
    opened = h.send("support", event("ticket_opened", "s1", ticket_id="t1", time=NOW - 4 * HOUR))
    assert opened.decision is not None and opened.decision.channel == "agent"
    browsing = h.send("web", event("product_view", "e1", product_id="p1", time=NOW - 3 * HOUR))
    assert browsing.decision is not None and browsing.decision.action == "none"
    assert [s.topic for s in browsing.sends] == ["cx.decisions.log"]
    h.send("support", event("ticket_resolved", "s2", ticket_id="t1", time=NOW - 2 * HOUR))
    after = h.send("web", event("product_view", "e2", product_id="p1"))
    assert after.decision is not None and after.decision.action_class == "marketing"


def test_misrouted_key_is_dead_lettered() -> None:
    h = Harness(partitions=3)
    home = expected_partition(b"c1", 3)
    wrong = (home + 1) % 3
    result = h.run(Record("cx.web", wrong, 0, b"c1", event("login", "e1")))
    assert result.rejection is not None and result.rejection.error_class == "misrouted_key"
    assert h.run(Record("cx.web", home, 0, b"c1", event("login", "e1"))).status == "decided"


def test_expected_partition_matches_kafkas_murmur2() -> None:
    # Values produced by Kafka's Java client (Utils.murmur2) for these keys and 3 partitions.
    assert [expected_partition(k, 3) for k in (b"a", b"customer-1", b"c1")] == [1, 0, 2]


def anon_event(etype: str, eid: str, anon: str = "a1", **data: object) -> bytes:
    doc = {"event_id": eid, "anonymous_id": anon, "type": etype, "time": NOW, **data}
    return orjson.dumps(doc)


def test_duplicate_event_is_counted_not_applied_and_not_dead_lettered() -> None:
    h = Harness()
    value = event("add_to_cart", "e1", product_id="p1", price=5.0)
    first = h.send("web", value)
    again = h.send("web", value)  # a producer retry: same id, new offset
    assert first.status == "decided" and again.status == "duplicate"
    assert again.sends == [] and again.writes == {}
    assert h.profiles["c1"].counts == {"web.add_to_cart": 1}
    other_source = h.send("purchase", event("order_placed", "e1", order_id="o", amount=1.0))
    assert other_source.status == "decided"  # ids are unique per source only


def test_anonymous_history_is_stitched_into_the_customer_at_login() -> None:
    h = Harness()
    for i in range(3):
        browsing = h.send("web", anon_event("product_view", f"v{i}", product_id="p"), key=b"a1")
        assert browsing.status == "applied" and browsing.decision is None
    assert h.profiles["anon:a1"].counts == {"web.product_view": 3}

    login = h.send("web", event("login", "l1", anonymous_id="a1"))
    assert login.status == "forwarded"
    assert [s.topic for s in login.sends] == ["app-identity"]
    assert login.sends[0].key == b"a1"
    [linked] = h.deliver(login)
    assert linked.links == {"a1": "c1"} and "anon:a1" not in h.profiles
    [decided] = h.deliver(linked)
    assert decided.status == "decided" and decided.decision is not None
    assert decided.decision.customer_id == "c1"
    assert decided.decision.features["log_web_events"] == round(math.log1p(4), 3)

    later = h.send("web", anon_event("product_view", "v9", product_id="p"), key=b"a1")
    assert later.status == "forwarded" and later.sends[0].key == b"c1"
    [applied] = h.deliver(later)
    assert applied.status == "decided"
    assert h.profiles["c1"].counts == {"web.product_view": 4, "web.login": 1}


def test_stitching_twice_does_not_double_count_history() -> None:
    h = Harness()
    h.send("web", anon_event("product_view", "v1", product_id="p"), key=b"a1")
    for eid in ("l1", "l2"):
        login = h.send("web", event("login", eid, anonymous_id="a1"))
        for linked in h.deliver(login):
            h.deliver(linked)
    assert h.profiles["c1"].counts == {"web.product_view": 1, "web.login": 2}


def test_anonymous_event_needs_one_of_the_ids() -> None:
    h = Harness()
    doc = {"event_id": "x", "type": "page_view", "time": NOW}
    result = h.send("web", orjson.dumps(doc), key=None)
    assert result.rejection is not None
    assert "'customer_id' or 'anonymous_id'" in result.rejection.message
    support = {"event_id": "x", "type": "chat_started", "time": NOW, "anonymous_id": "a"}
    result = h.send("support", orjson.dumps(support), key=None)
    assert result.rejection is not None and "'customer_id' is required" in result.rejection.message


def test_erasure_request_deletes_the_profile() -> None:
    h = Harness()
    h.send("web", event("add_to_cart", "e1", product_id="p1", price=5.0))
    assert "c1" in h.profiles
    erased = h.send("consent", event("erasure_requested", "x1"))
    assert erased.status == "erased" and erased.writes == {"c1": None}
    assert "c1" not in h.profiles
    after = h.send("web", event("page_view", "e2"))
    assert h.profiles["c1"].counts == {"web.page_view": 1} and after.status == "applied"


def test_a_resent_stitched_login_does_not_fold_history_in_twice() -> None:
    h = Harness()
    h.send("web", anon_event("product_view", "v1", product_id="p"), key=b"a1")
    login = h.send("web", event("login", "l1", anonymous_id="a1"))
    [linked] = h.deliver(login)
    first, again = h.deliver(linked), h.deliver(linked)  # the hop delivered twice
    assert [r.status for r in first + again] == ["decided", "duplicate"]
    assert h.profiles["c1"].counts == {"web.product_view": 1, "web.login": 1}


def test_the_remembered_holdout_group_is_the_one_the_hash_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario: the core remembers each customer's holdout group (``Core._holdout``),
    emptying its memory when full. We expect every answer, first or remembered, before
    and after the memory was emptied, to be ``in_holdout``'s, and the memory to stay
    within its bound; with no holdout share, no one is held out."""
    monkeypatch.setattr(pipeline, "_MAX_GROUPS", 16)
    cfg = DecideConfig(holdout_share=0.3, holdout_salt="s")
    core = Harness(cfg=cfg).core
    ids = [f"c{i}" for i in range(50)]
    drawn = [in_holdout(c, cfg) for c in ids]
    assert 0 < sum(drawn) < len(ids)  # both groups occur, so a wrong answer would show
    for _ in range(2):
        assert [core._holdout(c) for c in ids] == drawn
        assert len(core._groups) <= 16
    nobody = Harness(cfg=DecideConfig(holdout_share=0.0)).core
    assert not any(nobody._holdout(c) for c in ids)


def test_the_input_topics_map_to_their_sources_as_the_topic_names_say() -> None:
    """Scenario: the core looks a record's source up by topic (``Core._sources``). We
    expect the same answer as ``TopicNames.source_of`` for every input topic and for
    topics that are not inputs (other prefixes, near misses, the core's own topics)."""
    core = Harness().core
    topics = [*NAMES.inputs, "cx.dlq", "cx.decisions.log", "other.web", "cx.webx", "cx.", ""]
    assert [core._sources.get(t) for t in topics] == [NAMES.source_of(t) for t in topics]
    assert all(core._sources.get(t) is not None for t in NAMES.inputs)


def test_the_remembered_marketing_judge_answers_as_the_catalogue_it_was_made_for() -> None:
    """Scenario: the core makes the function that tells marketing decisions from others
    once per catalogue (``Core._marketing``, by digest). We expect it to answer as
    ``is_marketing`` for every action and journey of its catalogue, to be made once,
    and a catalogue with another digest (here its classes turned around) to get its own."""
    core = Harness().core
    cat = default_catalogue()
    flipped = replace(
        cat,
        digest="another",
        actions=tuple(
            replace(a, action_class="service" if a.action_class == "marketing" else "marketing")
            for a in cat.actions
        ),
        journeys=tuple(
            replace(j, journey_class="service" if j.journey_class == "marketing" else "marketing")
            for j in cat.journeys
        ),
    )
    items = [Pending("k", f"{a.action_id}:email", (), 0.5, False, "m", 0) for a in cat.actions]
    items += [
        Pending("k", "x:email", (), None, False, "m", 0, act=f"{j.id}:1:s:0:0")
        for j in cat.journeys
    ]
    for c in (cat, flipped, cat):
        judge = core._marketing(c)
        assert judge is core._marketing(c)
        assert [judge(i) for i in items] == [is_marketing(i, c.actions, c) for i in items]
    assert [core._marketing(cat)(i) for i in items] != [core._marketing(flipped)(i) for i in items]
