"""Scenario: decisions and outcomes sit on a real broker, as the worker and the channel
services write them; an operator explains one customer and evaluates policies.

We expect ``segue explain`` to read only that customer's partition and show their
decisions alone, newest first, with the rule that excluded each candidate; and
``segue evaluate --json`` to count exactly what was published: decisions, each skip by
its reason, outcomes read and credited.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

import engine.localkafka as localkafka
from engine.admin import create_topics
from engine.cli import main
from engine.explain import customer_decisions
from engine.records import decision_sends, expected_partition
from engine.settings import Settings
from tests.harness import free_port
from topics.catalogue import TopicNames
from topics.decisions import Candidate, Decision

pytestmark = pytest.mark.integration

NOW = time.time_ns() // 1_000_000
BASE = NOW - 2 * 3_600_000  # two hours ago: a 10-minute attribution window has closed
MINUTE = 60_000
NOISE = [f"n-{i:02d}" for i in range(40)]
ELIGIBLE = (
    Candidate("discount_offer", "sms", True, None, 0.4, 0.4),
    Candidate("discount_offer", "email", False, "no_consent"),
    Candidate("product_recommendation", "push", True, None, 0.3, 0.3),
    Candidate("cart_reminder", "email", False, "cart_not_empty"),
)


def nba(cid: str, did: str, at: int, **changes: Any) -> Decision:
    d = Decision(
        decision_id=did,
        customer_id=cid,
        event_id=f"e-{did}",
        event_source="web",
        event_type="product_view",
        event_time_ms=at - 5,
        action="discount_offer",
        channel="sms",
        action_class="marketing",
        score=0.4,
        explored=False,
        reasons=("eligible 2 of 4", "highest priority"),
        model_version="logistic-heads/42",
        candidates=ELIGIBLE,
        features={"log_web_events": 1.0},
        decided_at_ms=at,
        catalogue_version="default@1",
        stage="active",
        propensity=0.95,
    )
    return replace(d, **changes)


QUIET = {"action": "none", "channel": None, "action_class": None, "score": None}
RESENT = {"propensity": None, "candidates": (), "reasons": ()}
A1 = nba("c-a", "d-a1", NOW - 3 * 86_400_000)  # three days ago
A2 = nba("c-a", "d-a2", BASE)
A3 = nba("c-a", "d-a3", BASE + MINUTE, propensity=0.05, **QUIET)
A4 = nba(
    "c-a", "d-a4", BASE + 2 * MINUTE, journey="cart_recovery", action="cart_reminder",
    channel="email", propensity=1.0, reasons=("journey cart_recovery step remind",),
)  # fmt: skip
A2_AGAIN = replace(A2, decided_at_ms=BASE + 3 * MINUTE, **RESENT)  # re-sent after a restart
B1 = nba("c-b", "d-b1", BASE + 5_000, holdout=True, propensity=1.0, **QUIET)
B2 = nba(
    "c-b", "d-b2", BASE + 10_000, action="product_recommendation", channel="push",
    score=0.3, explored=True, propensity=0.05,
)  # fmt: skip
B3 = nba("c-b", "d-b3", BASE + 15_000, **RESENT)  # its original was never logged
NOISY = [
    nba(c, f"d-{c}-{k}", BASE + 20_000 + 100 * i + k) for i, c in enumerate(NOISE) for k in (0, 1)
]
DECISIONS = sorted(
    [A1, A2, A3, A4, A2_AGAIN, B1, B2, B3, *NOISY], key=lambda d: d.decided_at_ms
)  # fmt: skip


def outcome(d: Decision, etype: str, after_ms: int) -> dict[str, Any]:
    return {
        "event_id": f"o-{d.decision_id}-{etype}",
        "customer_id": d.customer_id,
        "type": etype,
        "time": d.decided_at_ms + after_ms,
        "decision_id": d.decision_id,
        "channel": d.channel or "email",
    }


CONVERTED_NOISE = [d for d in NOISY if d.decision_id.endswith("-0")][::4]  # 10
OUTCOMES = [
    *(outcome(d, "converted", MINUTE) for d in CONVERTED_NOISE),
    outcome(A2, "delivered", 1_000),
    outcome(A2, "clicked", 30_000),
    outcome(A4, "converted", MINUTE),  # a journey's: not evaluated
    outcome(B2, "converted", 20 * MINUTE),  # after a 10-minute window
    outcome(NOISY[1], "dismissed", MINUTE),
]


@dataclass(frozen=True)
class Published:
    settings: Settings


@pytest.fixture(scope="module")
def published(kafka: localkafka.ClusterInfo) -> Iterator[Published]:
    settings = replace(
        Settings.from_env({}),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"ope{uuid.uuid4().hex[:6]}.",
    )
    names = TopicNames(settings.topic_prefix)

    async def publish() -> None:
        await create_topics(settings, report=lambda line: None)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for d in DECISIONS:  # as the worker writes them: value, key, CloudEvents headers
                for s in decision_sends(d, names, d.encode()):
                    await producer.send_and_wait(
                        s.topic, s.value, s.key, headers=s.headers, timestamp_ms=d.decided_at_ms
                    )
            for o in OUTCOMES:
                key = o["customer_id"].encode()
                await producer.send_and_wait(names.source("outcome"), orjson.dumps(o), key)
            await producer.send_and_wait(names.source("outcome"), b"{not json", b"c-a")
        finally:
            await producer.stop()

    asyncio.run(publish())
    yield Published(settings)


def run(
    settings: Settings, argv: list[str], capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    mp.setenv("SEGUE_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    mp.setenv("SEGUE_TOPIC_PREFIX", settings.topic_prefix)
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_explain_shows_one_customer_newest_first_with_exclusions(
    published: Published, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(published.settings, ["explain", "c-a", "--json"], capsys, monkeypatch)
    assert code == 0
    doc = orjson.loads(out)
    assert [d["decision_id"] for d in doc["decisions"]] == ["d-a2", "d-a4", "d-a3", "d-a2", "d-a1"]
    assert {d["customer_id"] for d in doc["decisions"]} == {"c-a"}
    assert doc["partition"] == expected_partition(b"c-a", published.settings.partitions)

    code, out, _ = run(published.settings, ["explain", "c-a"], capsys, monkeypatch)
    assert code == 0
    blocks = out.split("\n\n")
    assert [b.splitlines()[1].split()[1].rstrip(":") for b in blocks] == [
        "d-a2", "d-a4", "d-a3", "d-a2", "d-a1"
    ]  # fmt: skip
    assert "candidates: not recorded" in blocks[0]
    assert "journey cart_recovery" in blocks[1] and "propensity 1.000" in blocks[1]
    assert "stayed quiet" in blocks[2] and "propensity 0.050" in blocks[2]
    assert "discount_offer:email         excluded: no_consent" in blocks[3]
    assert "cart_reminder:email          excluded: cart_not_empty" in blocks[3]
    assert "score 0.400  priority 0.400  <- chosen" in blocks[3]
    assert "model logistic-heads/42; catalogue default@1; stage active" in blocks[3]
    assert "c-b" not in out and "n-0" not in out


def test_explain_is_bounded_by_since_and_limit_and_reads_one_partition(
    published: Published, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = published.settings
    _, out, _ = run(settings, ["explain", "c-a", "--since", "1d", "--json"], capsys, monkeypatch)
    assert [d["decision_id"] for d in orjson.loads(out)["decisions"]] == [
        "d-a2", "d-a4", "d-a3", "d-a2"
    ]  # fmt: skip
    _, out, _ = run(settings, ["explain", "c-a", "--limit", "2", "--json"], capsys, monkeypatch)
    assert [d["decision_id"] for d in orjson.loads(out)["decisions"]] == ["d-a2", "d-a4"]
    code, out, _ = run(settings, ["explain", "nobody"], capsys, monkeypatch)
    assert (code, out.strip()) == (0, "no decisions for nobody since 7d")

    found = asyncio.run(customer_decisions(settings, "c-b", since_ms=0, limit=10))
    home = expected_partition(b"c-b", settings.partitions)
    on_home = [d for d in DECISIONS if expected_partition(d.customer_id.encode(), 3) == home]
    assert found.partition == home and found.scanned == len(on_home) < len(DECISIONS)
    assert [d.decision_id for d in found.decisions] == ["d-b3", "d-b2", "d-b1"]


def test_evaluate_counts_what_was_published(
    published: Published, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["evaluate", "--json", "--attribution-window", "10m"]
    code, out, _ = run(published.settings, argv, capsys, monkeypatch)
    assert code == 0
    doc = orjson.loads(out)
    assert doc["policy"] == "greedy" and doc["attribution_window_s"] == 600
    assert doc["counts"] == {
        "decisions": len(DECISIONS),
        "evaluated": len(DECISIONS) - 4,
        "skipped": {
            "duplicate decision id (re-sent or replayed)": 1,
            "journey decision": 1,
            "holdout": 1,
            "no propensity recorded": 1,
        },
        "unreadable_decisions": 0,
        "outcomes": len(OUTCOMES) + 1,
        "unreadable_outcomes": 1,
        "rewards_attributed": len(CONVERTED_NOISE) + 1,
        "rewards_after_window": 1,
    }
    n = len(DECISIONS) - 4
    assert doc["observed"]["value"] == pytest.approx(11 / n)
    # Greedy takes discount_offer:sms everywhere; the logs took it with 0.95 and earned
    # all 11 rewards with it (d-a3 stayed quiet, d-b2 explored and was late).
    assert doc["ips"]["value"] == pytest.approx(11 / 0.95 / n, abs=1e-9)
    for name in ("ips", "snips", "dr"):
        assert doc[name]["n"] == n and doc[name]["lo"] < doc[name]["value"] < doc[name]["hi"]

    code, out, _ = run(published.settings, [*argv, "--policy", "random"], capsys, monkeypatch)
    assert code == 0 and orjson.loads(out)["counts"]["evaluated"] == n
    text = ["evaluate", "--attribution-window", "10m"]
    code, out, _ = run(published.settings, text, capsys, monkeypatch)
    assert code == 0 and "policy greedy: 84 of 88 decisions evaluated" in out
    assert "skipped 1: holdout" in out and "95% CI [" in out

    later = ["evaluate", "--json", "--since", "1d", "--until", "1h"]
    _, out, _ = run(published.settings, later, capsys, monkeypatch)
    assert orjson.loads(out)["counts"]["decisions"] == len(DECISIONS) - 1  # not d-a1


def test_a_missing_topic_or_broker_is_a_one_line_error(
    kafka: localkafka.ClusterInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = replace(Settings.from_env({}), kafka_bootstrap=kafka.bootstrap, topic_prefix="nope.")
    for argv in (["explain", "c-a"], ["evaluate"]):
        code, _, err = run(empty, argv, capsys, monkeypatch)
        assert (
            code == 1
            and err == "segue: nope.decisions.log does not exist; run `segue topics create` first\n"
        )
    gone = replace(empty, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    for argv in (["explain", "c-a"], ["evaluate"]):
        code, _, err = run(gone, argv, capsys, monkeypatch)
        assert code == 1 and err.startswith("segue: cannot reach Kafka at 127.0.0.1:")
        assert err.count("\n") == 1
