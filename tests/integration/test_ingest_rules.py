"""Scenario: upstream apps send events in every envelope, twice, and anonymously.

We expect CloudEvents in binary mode (from kcat) and structured mode to be decided like
plain JSON, a wrong content type to be dead-lettered, a repeated event to be applied
once, and an anonymous visitor's history to follow them into their customer profile at
login, with later anonymous events attributed to the customer.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
import uuid
from typing import Any

import orjson
import pytest

from tests.harness import Segue, event
from topics.deadletter import reason_of

pytestmark = pytest.mark.integration


def cid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def anonymous(doc: dict[str, Any]) -> dict[str, Any]:
    """The event as a visitor not yet known sends it: only an anonymous_id."""
    out = {k: v for k, v in doc.items() if k != "customer_id"}
    out["anonymous_id"] = doc["customer_id"]
    return out


def has_event(event_id: str) -> Any:
    return lambda ds: any(d["event_id"] == event_id for d in ds)


def test_kcat_cloudevents_binary_mode_is_accepted(segue: Segue) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "make test installs Debian's kcat"
    customer = cid()
    data = orjson.dumps({"customer_id": customer, "query": "rain boots"})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers = [
        "ce_specversion=1.0",
        "ce_id=kcat-ce-1",
        "ce_source=/shop/frontend",
        "ce_type=com.shop.web.search",
        f"ce_time={now}",
        "content-type=application/json",
    ]
    args = [kcat, "-P", "-b", segue.settings.kafka_bootstrap, "-t", segue.names.source("web")]
    args += ["-k", customer, "-X", "topic.partitioner=murmur2_random"]
    for h in headers:
        args += ["-H", h]
    subprocess.run(args, input=data, check=True, timeout=30)
    [d] = segue.decisions(segue.names.decision_log, customer, has_event("kcat-ce-1"))
    assert (d["event_type"], d["event_source"]) == ("search", "web")


def test_cloudevents_structured_mode_is_accepted(segue: Segue) -> None:
    customer = cid()
    ce = {
        "specversion": "1.0",
        "id": "structured-1",
        "source": "/support-desk",
        "type": "com.desk.support.ticket_opened",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "subject": customer,
        "datacontenttype": "application/json",
        "data": {"ticket_id": "t-7", "priority": "urgent"},
    }
    segue.produce(
        "support",
        [(customer.encode(), orjson.dumps(ce))],
        headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")],
    )
    [d] = segue.decisions(segue.names.decision_log, customer, has_event("structured-1"))
    assert (d["action"], d["channel"]) == ("support_followup", "agent")


def test_wrong_content_type_is_dead_lettered(segue: Segue) -> None:
    customer = cid()
    value = orjson.dumps(event("login", customer, event_id="xml-1"))
    segue.produce("web", [(customer.encode(), value)], headers=[("content-type", b"text/xml")])
    [dead] = [
        r
        for r in segue.consume(
            segue.names.dlq, lambda recs: any(r.key == customer.encode() for r in recs)
        )
        if r.key == customer.encode()
    ]
    assert reason_of(dead.headers)["segue.error.class"] == "unsupported_content_type"
    assert dead.value == value


def test_a_repeated_event_is_applied_once(segue: Segue) -> None:
    customer = cid()
    first = event("add_to_cart", customer, event_id="dup-1", product_id="p", price=3.0)
    segue.produce("web", [first, first, first])
    segue.produce("web", [event("search", customer, event_id="after-dup", query="x")])
    log = segue.decisions(segue.names.decision_log, customer, has_event("after-dup"))
    assert [d["event_id"] for d in log] == ["dup-1", "after-dup"]
    # Three cart adds of the same event: the cart holds one item, not three events' worth.
    assert log[-1]["features"]["log_web_events"] == round(math.log1p(2), 3)


def test_anonymous_history_is_stitched_at_login(segue: Segue) -> None:
    anon, customer = cid("anon"), cid()
    browsing = [
        {
            **event("product_view", customer, product_id=f"p{i}", category="shoes"),
            "anonymous_id": anon,
            "customer_id": None,
        }
        for i in range(3)
    ]
    for doc in browsing:
        del doc["customer_id"]
    views = segue.metric("segue_events_consumed_total", source="web", type="product_view")
    segue.produce("web", browsing)
    # The visitor's events and the login travel on different partitions: let the
    # browsing be applied first, as it is when a person logs in after browsing.
    segue.wait_metric("segue_events_consumed_total", views + 3, source="web", type="product_view")
    segue.produce(
        "web", [event("login", customer, event_id="login-1", anonymous_id=anon, device="mobile")]
    )
    [login] = segue.decisions(segue.names.decision_log, customer, has_event("login-1"))
    # The login decision already sees the three anonymous product views.
    assert login["features"]["log_web_events"] == round(math.log1p(4), 3)
    assert login["features"]["view_share"] == pytest.approx(3 / 4)

    later = {
        **event("add_to_cart", customer, event_id="anon-later", product_id="p9", price=9.0),
        "anonymous_id": anon,
    }
    del later["customer_id"]
    segue.produce("web", [(anon.encode(), orjson.dumps(later))])
    log = segue.decisions(segue.names.decision_log, customer, has_event("anon-later"))
    [after] = [d for d in log if d["event_id"] == "anon-later"]
    assert after["customer_id"] == customer
    assert after["features"]["log_web_events"] == round(math.log1p(5), 3)
