"""One fixed-load run: an open-loop generator, a measuring consumer, and the path between.

Each runs in a process of its own (spawned, so neither holds the other's memory):

* ``generate`` sends templates round-robin to the input topic at a fixed rate, what is
  due every :data:`TICK_SECONDS`, stamping each as :mod:`benchmarks.openloop` describes,
  never waiting for an ack; it catches up in a burst when it falls behind its schedule
  and reports how far behind it got.
* ``collect`` reads the output topic from its end as of before the run and records, for
  the first output of each of the run's events, its latency.

:func:`fixed_load` starts both around the path under test (a worker or the raw loop,
already running), stops the sending early when the backlog grows past recovery, and
measures the CPU of the path, the broker, the two load processes and the rest of the
machine over the counted part of the run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from benchmarks.backlog import say
from benchmarks.openloop import (
    ABORT_BACKLOG_SECONDS,
    WARMUP_SECONDS,
    due,
    read_output,
    stamped,
    summary,
    verdict,
)
from benchmarks.procstats import BenchError, Snapshot, core_percent, status_kib

DRAIN_SECONDS = 10.0
"""How long outputs may keep arriving after the sending ended (a steady backlog drains)."""
TICK_SECONDS = 0.005
"""How often the generator sends what is due: the events of 5 ms go out together, as a
producer with Kafka's default ``linger.ms`` of 5 (since Kafka 4.0) batches them, each
stamped when it is sent. The generator shares the machine's two cores with the path it
measures; ticks of 1 ms made a produce request of about one event each: at 1,000/s the
generator and the measuring consumer took 36-38% of a core and the broker 31-32%, against
21-25% and 21-28% with 5 ms (benchmarks/README.md, fourteenth pass)."""
ACK_SAMPLE_EVERY = 16
"""One event in this many also times its producer ack: the first leg of the latency."""
COLLECT_WAIT_MS = 50
POLL_SECONDS = 0.25
PROGRESS_SECONDS = 5.0


LOG_APPEND_TIME = 1
"""A record's timestamp type when the broker stamped it as it appended it."""
TOPIC_CONFIG = 1
"""DescribeConfigs' source of a value set on the topic itself (DYNAMIC_TOPIC_CONFIG)."""


class Sample(NamedTuple):
    """One event of a run, as the measuring consumer saw its first output
    (benchmarks/openloop.py defines each)."""

    sent_ns: int
    latency_ms: float
    """Sent to arrived at this consumer."""
    engine_ms: float | None
    """The path's ``decided_at_ms`` minus the event time."""
    produced_ms: float | None
    """The output's log-append time minus the event time; None when the output topic
    is not stamped on append."""


@dataclass(frozen=True, slots=True)
class Template:
    key: bytes
    rest: bytes
    """The event's JSON less its opening brace (openloop.template_rest)."""
    answered: bool
    """Whether the path outputs something for this event (counted towards the backlog)."""


# --- the generator process ------------------------------------------------------------


def generate(
    bootstrap: str,
    topic: str,
    templates: Sequence[Template],
    run: str,
    rate: float,
    seconds: float,
    stop: Event,
    finished: Event,
    release: Event,
    started_ns: Synchronized[int],
    expected: Synchronized[int],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    results.put(
        asyncio.run(
            _generate(bootstrap, topic, templates, run, rate, seconds, stop, started_ns, expected)
        )
    )
    # Stay until told, so the parent can read this process's CPU time after the sending.
    finished.set()
    release.wait(120)


async def _generate(
    bootstrap: str,
    topic: str,
    templates: Sequence[Template],
    run: str,
    rate: float,
    seconds: float,
    stop: Event,
    started_ns: Synchronized[int],
    expected: Synchronized[int],
) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = answered = 0
        behind_max = 0
        acks: list[float] = []
        t0 = time.monotonic()
        started_ns.value = time.time_ns()
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            if elapsed >= seconds:
                break
            target = due(rate, elapsed)
            behind_max = max(behind_max, target - sent)
            while sent < target:
                t = templates[sent % len(templates)]
                sent_ns = time.time_ns()
                acked = await producer.send(topic, stamped(t.rest, run, sent, sent_ns), key=t.key)
                if sent % ACK_SAMPLE_EVERY == 0:
                    acked.add_done_callback(
                        lambda _, at=sent_ns: acks.append((time.time_ns() - at) / 1e6)
                    )
                sent += 1
                answered += t.answered
            expected.value = answered
            await asyncio.sleep(TICK_SECONDS)
        took = time.monotonic() - t0
        await producer.flush()
        return {
            "sent": sent,
            "answered": answered,
            "send_seconds": round(took, 3),
            "sent_per_second": round(sent / took, 1) if took else None,
            "most_behind_schedule_ms": round(behind_max / rate * 1000, 1),
            "generator_ack": summary(acks),
        }
    finally:
        await producer.stop()


# --- the measuring consumer process ---------------------------------------------------


def collect(
    bootstrap: str,
    topic: str,
    partitions: int,
    run: str,
    ready: Event,
    stop: Event,
    arrived: Synchronized[int],
    results: multiprocessing.Queue[list[Sample]],
) -> None:
    results.put(asyncio.run(_collect(bootstrap, topic, partitions, run, ready, stop, arrived)))


async def _collect(
    bootstrap: str,
    topic: str,
    partitions: int,
    run: str,
    ready: Event,
    stop: Event,
    arrived: Synchronized[int],
) -> list[Sample]:
    """A :class:`Sample` of each of the run's events."""
    # A short fetch wait: a fetch request that leaves out a partition whose records are
    # still buffered is held by the broker until then (benchmarks/README.md, the fetch
    # wait), and this consumer is the instrument.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=COLLECT_WAIT_MS
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the end offsets now, before any sending
        ready.set()
        seen: set[int] = set()
        out: list[Sample] = []
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now_ns = time.time_ns()
            for records in batches.values():
                for rec in records:
                    got = read_output(rec.value, run)
                    if got is None or got.seq in seen:
                        continue
                    seen.add(got.seq)
                    sent_ms = got.sent_ns // 1_000_000
                    engine = produced = None
                    if got.decided_at_ms is not None:
                        engine = float(got.decided_at_ms - sent_ms)
                    if rec.timestamp_type == LOG_APPEND_TIME:
                        produced = float(rec.timestamp - sent_ms)
                    out.append(Sample(got.sent_ns, (now_ns - got.sent_ns) / 1e6, engine, produced))
            arrived.value = len(seen)
        return out
    finally:
        await consumer.stop()


async def stamp_on_append(bootstrap: str, topic: str) -> None:
    """Have the broker stamp each record of ``topic`` with the time it appends it
    (``message.timestamp.type=LogAppendTime``): when an output is produced. AlterConfigs
    replaces what is set on a topic whole, so the values set on it are sent again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        error, message, _, _, entries = described[0].resources[0][:5]
        if error:
            raise BenchError(f"describing {topic}'s configs failed: {error} {message}")
        kept = {e[0]: e[1] for e in entries if e[3] == TOPIC_CONFIG}
        configs = kept | {"message.timestamp.type": "LogAppendTime"}
        altered = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)]
        )
        for response in altered:
            for error, message, *_ in response.resources:
                if error:
                    raise BenchError(f"stamping {topic} on append failed: {error} {message}")
    finally:
        await admin.close()


# --- one run, from the parent ---------------------------------------------------------


def cpu_between(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """% of one core: the path, the broker, the load generator and consumer, the rest."""
    wall = b.wall - a.wall
    return {
        "cpu_percent_of_one_core": core_percent(b.ticks - a.ticks, wall),
        "broker_cpu_percent": a.broker_percent(b),
        "loadgen_cpu_percent": core_percent(b.load - a.load, wall),
        **a.others(b),
    }


def fixed_load(
    label: str,
    *,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    partitions: int,
    templates: Sequence[Template],
    run: str,
    rate: int,
    seconds: float,
    pid: int,
    brokers: Sequence[int],
) -> dict[str, Any]:
    """Offer ``rate`` events/s for ``seconds`` to the path running as ``pid``."""
    # The backlog counts outputs: (b) answers only its markers.
    out_rate = rate * sum(t.answered for t in templates) / len(templates)
    ctx = multiprocessing.get_context("spawn")
    ready, finished, release = ctx.Event(), ctx.Event(), ctx.Event()
    stop_gen, stop_col = ctx.Event(), ctx.Event()
    started_ns, expected, arrived = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Value("q", 0)
    gen_out: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    col_out: multiprocessing.Queue[list[Sample]] = ctx.Queue()
    col = ctx.Process(
        target=collect,
        args=(bootstrap, out_topic, partitions, run, ready, stop_col, arrived, col_out),
    )
    gen = ctx.Process(
        target=generate,
        args=(bootstrap, in_topic, templates, run, rate, seconds, stop_gen, finished, release),
        kwargs={"started_ns": started_ns, "expected": expected, "results": gen_out},
    )
    col.start()
    try:
        if not ready.wait(60):
            raise BenchError(f"{label}: the measuring consumer was not ready in 60 s")
        gen.start()
        assert gen.pid is not None and col.pid is not None
        loaders = [gen.pid, col.pid]
        first: Snapshot | None = None
        backlog_warm = 0
        aborted = False
        next_report = time.monotonic() + PROGRESS_SECONDS
        while not finished.is_set():
            if not gen.is_alive():
                raise BenchError(f"{label}: the generator exited with {gen.exitcode}")
            time.sleep(POLL_SECONDS)
            if not started_ns.value:
                continue
            in_run = time.time_ns() / 1e9 - started_ns.value / 1e9
            backlog = expected.value - arrived.value
            if first is None and in_run >= WARMUP_SECONDS:
                first, backlog_warm = Snapshot.take(pid, brokers, loaders), backlog
            if first and not aborted and backlog > out_rate * ABORT_BACKLOG_SECONDS:
                say(f"  {label}: {backlog:,} outputs behind after {in_run:.0f} s; stopping")
                stop_gen.set()
                aborted = True
            if time.monotonic() >= next_report:
                say(f"  {label}: {in_run:4.0f} s  sent {expected.value:>8,}  behind {backlog:>7,}")
                next_report += PROGRESS_SECONDS
        last = Snapshot.take(pid, brokers, loaders)
        rss = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        backlog_end = expected.value - arrived.value
        judged = verdict(out_rate, backlog_warm, backlog_end, aborted=aborted, drained=True)
        drain_until = time.monotonic() + (DRAIN_SECONDS if judged.sustained else 1.0)
        while arrived.value < expected.value and time.monotonic() < drain_until:
            time.sleep(0.05)
        drained = arrived.value >= expected.value
        release.set()
        stop_col.set()
        gen_result = _get(gen_out, label, "generator")
        samples = _get(col_out, label, "consumer")
    finally:
        stop_gen.set()
        release.set()
        stop_col.set()
        for proc in (gen, col):
            if proc.pid is not None:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
    counted_from = started_ns.value + int(WARMUP_SECONDS * 1e9)
    counted: list[Sample] = [s for s in samples if s.sent_ns >= counted_from]
    judged = verdict(out_rate, backlog_warm, backlog_end, aborted=aborted, drained=drained)
    result: dict[str, Any] = {
        "offered_per_second": rate,
        **gen_result,
        "outputs_received": len(samples),
        "backlog_after_warmup": backlog_warm,
        "backlog_at_end": backlog_end,
        "sustained": judged.sustained,
        "verdict": judged.reason,
    }
    if judged.sustained:
        result["produced"] = summary(s.produced_ms for s in counted if s.produced_ms is not None)
        result["latency"] = summary(s.latency_ms for s in counted)
        result["decided_minus_event_time"] = summary(
            s.engine_ms for s in counted if s.engine_ms is not None
        )
    if first is not None and last.wall > first.wall:
        result |= cpu_between(first, last)
        result["cpu_window_seconds"] = round(last.wall - first.wall, 2)
    result |= {"rss_mib": round(rss[0] / 1024, 1), "peak_rss_mib": round(rss[1] / 1024, 1)}
    return result


def _get(results: multiprocessing.Queue[Any], label: str, what: str) -> Any:
    try:
        return results.get(timeout=60)
    except queue.Empty:
        raise BenchError(f"{label}: the {what} process returned nothing in 60 s") from None
