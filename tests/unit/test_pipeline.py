"""The record-level core: dead letters, decisions, replays and learning, without Kafka."""

from __future__ import annotations

import orjson

from engine.decide import DecideConfig
from engine.pipeline import Limits, Record, Result, expected_partition, process
from engine.profile import Profile
from models.policy import LogisticHeads
from topics.catalogue import TopicNames
from topics.deadletter import reason_of

NOW = 1_800_000_000_000
NAMES = TopicNames("cx.")


class Harness:
    def __init__(self, partitions: int = 0) -> None:
        self.profiles: dict[str, Profile] = {}
        self.policy = LogisticHeads()
        self.limits = Limits(partitions=partitions)
        self.offset = 0

    def send(self, source: str, value: bytes | None, key: bytes | None = b"c1") -> Result:
        self.offset += 1
        rec = Record(f"cx.{source}", 0, self.offset, key, value, [("ce_id", b"x")])
        return self.run(rec)

    def run(self, rec: Record) -> Result:
        result = process(
            rec,
            lambda cid: self.profiles.get(cid, Profile(cid)),
            self.policy,
            NAMES,
            DecideConfig(exploration_rate=0.0),
            self.limits,
            now_ms=NOW,
        )
        if result.profile is not None:
            self.profiles[result.profile.customer_id] = result.profile
        return result


def event(etype: str, eid: str, **data: object) -> bytes:
    doc = {"event_id": eid, "customer_id": "c1", "type": etype, "time": NOW, **data}
    return orjson.dumps(doc)


def test_rejected_record_becomes_one_dead_letter_with_original_bytes() -> None:
    h = Harness()
    result = h.send("web", b"{oops")
    assert result.status == "rejected" and result.profile is None
    [dlq] = result.sends
    assert (dlq.topic, dlq.key, dlq.value) == ("cx.dlq", b"c1", b"{oops")
    assert dlq.headers[0] == ("ce_id", b"x")
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
    assert again.status == "replayed" and again.profile is None
    assert h.profiles["c1"].counts == {"web.add_to_cart": 1}
    assert [(s.topic, s.value) for s in again.sends] == [(s.topic, s.value) for s in first.sends]


def test_terminal_outcome_teaches_the_policy_once() -> None:
    h = Harness()
    decided = h.send("web", event("product_view", "e1", product_id="p1"))
    assert decided.decision is not None
    did = decided.decision.decision_id
    assert h.send("outcome", event("delivered", "o1", decision_id=did)).status == "applied"
    assert h.policy.updates == 0
    learned = h.send("outcome", event("converted", "o2", decision_id=did))
    assert learned.status == "learned" and learned.reward == 1.0
    assert h.policy.updates == 1 and h.profiles["c1"].pending == ()
    late = h.send("outcome", event("dismissed", "o3", decision_id=did))
    assert late.status == "applied" and h.policy.updates == 1


def test_open_ticket_customer_gets_no_marketing_until_resolved() -> None:
    h = Harness()
    opened = h.send("support", event("ticket_opened", "s1", ticket_id="t1"))
    assert opened.decision is not None and opened.decision.channel == "agent"
    browsing = h.send("web", event("product_view", "e1", product_id="p1"))
    assert browsing.decision is not None and browsing.decision.action == "none"
    assert [s.topic for s in browsing.sends] == ["cx.decisions.log"]
    h.send("support", event("ticket_resolved", "s2", ticket_id="t1"))
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
