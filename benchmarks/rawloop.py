"""The baseline path: a raw aiokafka consume-transform-produce loop shaped like a worker.

Per event: orjson-parse, update a small per-customer dict, make a decision-like record
(an action chosen by two rules, the event id, ``decided_at_ms``), hand it to the producer
without waiting for its ack. Every COMMIT_SECONDS, and on stop: flush the producer, wait
for every ack, then commit the consumed offsets (so an output is never lost past a commit).
``acks="all"`` and no linger, as Faust's producer; uvloop's event loop, as the worker's.

It runs as a process of its own until told to stop, counting what it consumed in a shared
counter, so one process drains a preloaded backlog and then serves the fixed loads.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

COMMIT_SECONDS = 2.0
"""The flush-and-commit interval; Faust's broker_commit_interval is 2.8 s."""
CARTS = frozenset({"add_to_cart"})


def serve(
    bootstrap: str,
    source: str,
    sink: str,
    group: str,
    consumed: Synchronized[int],
    stop: Event,
) -> None:
    # The worker's own event loop: the fastest plain loop is on it too.
    uvloop.run(_serve(bootstrap, source, sink, group, consumed, stop))


def transform(doc: dict[str, Any], state: dict[str, dict[str, Any]], now_ms: int) -> bytes:
    """The per-event work: state update and a decision-like record, encoded.

    >>> state = {}
    >>> out = transform({"event_id": "e1", "customer_id": "c1", "type": "add_to_cart",
    ...                  "time": 5, "price": 9.5}, state, 7)
    >>> orjson.loads(out)["action"], state["c1"]["cart_value"]
    ('cart_reminder', 9.5)
    """
    who = str(doc.get("customer_id") or doc.get("anonymous_id"))
    kind = str(doc["type"])
    st = state.get(who)
    if st is None:
        st = state[who] = {"events": 0, "types": {}, "cart_value": 0.0, "last_ms": 0}
    st["events"] += 1
    st["types"][kind] = st["types"].get(kind, 0) + 1
    st["last_ms"] = max(st["last_ms"], int(doc["time"]))
    if kind in CARTS:
        st["cart_value"] += float(doc.get("price", 0.0))
    if st["cart_value"] > 0:
        action, score = "cart_reminder", min(1.0, st["cart_value"] / 100)
    else:
        action, score = "product_recommendation", 1.0 / (1 + st["events"])
    return orjson.dumps(
        {
            "decision_id": f"d-{doc['event_id']}",
            "customer_id": who,
            "event_id": doc["event_id"],
            "event_type": kind,
            "event_time_ms": doc["time"],
            "action": action,
            "channel": "email",
            "score": round(score, 6),
            "decided_at_ms": now_ms,
        }
    )


async def _serve(
    bootstrap: str,
    source: str,
    sink: str,
    group: str,
    consumed: Synchronized[int],
    stop: Event,
) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    state: dict[str, dict[str, Any]] = {}
    pending: list[asyncio.Future[Any]] = []
    done = 0
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for rec in records:
                    out = transform(orjson.loads(rec.value), state, time.time_ns() // 1_000_000)
                    pending.append(await producer.send(sink, out, key=rec.key))
                done += len(records)
            consumed.value = done
            if pending and time.monotonic() - last_commit >= COMMIT_SECONDS:
                await _commit(consumer, producer, pending)
                last_commit = time.monotonic()
        await _commit(consumer, producer, pending)
    finally:
        await producer.stop()
        await consumer.stop()


async def _commit(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, pending: list[asyncio.Future[Any]]
) -> None:
    await producer.flush()
    await asyncio.gather(*pending)
    pending.clear()
    await consumer.commit()


class RawLoop:
    """The loop's process, started by :meth:`start`, stopped by :meth:`stop`."""

    def __init__(self, bootstrap: str, source: str, sink: str, group: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.consumed: Synchronized[int] = ctx.Value("q", 0)
        self.stopping = ctx.Event()
        self.proc = ctx.Process(
            target=serve, args=(bootstrap, source, sink, group, self.consumed, self.stopping)
        )

    def start(self) -> int:
        self.proc.start()
        assert self.proc.pid is not None
        return self.proc.pid

    def count(self) -> float:
        return float(self.consumed.value)

    def check(self) -> str | None:
        return None if self.proc.is_alive() else f"exited with {self.proc.exitcode}"

    def stop(self) -> None:
        if self.proc.pid is None:
            return
        self.stopping.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
