"""``segue demo``: the whole loop on a local Apache Kafka with simulated customers.

1. Start a fresh single-node Kafka on a free loopback port (fetched once by Maven).
2. Create the topic catalogue, publish the demo journey catalogue (the default one with
   every duration 180 times shorter: an hour's wait passes in 20 seconds) through the
   control topic, and start one worker process.
3. Wait until the worker answers a warm-up event, so latency is not start-up time.
4. A simulated population sends web, support and purchase events (and a few broken
   records) at a fixed rate, reads every decision from the decision log and answers
   each action with outcome events drawn from its true response probabilities.
5. Drain, print the summary, and stop everything it started, whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import engine.localkafka as localkafka
from engine.actions import TRIGGERS
from engine.admin import create_topics
from engine.control import publish
from engine.decide import DecideConfig, group_of
from engine.journey_checks import DURATION_UNITS_MS
from engine.journey_loader import default_catalogue_text
from engine.pending import TIMER_SOURCE
from engine.settings import Settings
from engine.supervise import WorkerProcess
from models.simulator import Population
from topics.catalogue import TopicNames
from topics.deadletter import ERROR_CLASS

WARMUP_CUSTOMER = "demo-warmup"
DEMO_CATALOGUE = "demo"
DEMO_TIME_FACTOR = 180
DEMO_ATTRIBUTION_SECONDS = 3600 // DEMO_TIME_FACTOR


class DemoError(Exception):
    """The demo could not go on; the reason is one line (plus the worker's log tail)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    customers: int = 10_000
    """Enough that the contact policy's daily caps, which a 90 s demo cannot shorten,
    leave several thousand marketing decisions to learn from, and a holdout group of a
    few hundred."""
    duration_s: float = 90.0
    rate: float = 400.0
    """Offered simulated activities per second (each is one or two events)."""
    seed: int = 7
    invalid_share: float = 0.01
    anonymous_share: float = 0.3
    """Share of customers who browse anonymously until they log in."""


@dataclass(slots=True)
class GroupTally:
    customers: set[str] = field(default_factory=set)
    buyers: set[str] = field(default_factory=set)
    revenue: float = 0.0


@dataclass(slots=True)
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    invalid_sent: int = 0
    triggers_sent: int = 0
    anonymous_sent: int = 0
    stitched: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    decisions_seen: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[int] = field(default_factory=list)
    journey_decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(journey, action, channel) of each journey decision."""
    timer_delays_ms: list[int] = field(default_factory=list)
    groups: dict[str, GroupTally] = field(default_factory=dict)
    """Known customers, first orders and revenue by group (treated, holdout)."""
    # (second half?, chosen p, random p, oracle p, converted) per marketing decision
    marketing: list[tuple[bool, float, float, float, bool]] = field(default_factory=list)


def run_demo(settings: Settings, opts: DemoOptions) -> int:
    root = settings.data_dir / "demo"
    kafka_dir = root / "kafka"
    shutil.rmtree(root, ignore_errors=True)
    _client_logs_to(root / "clients.log")
    say("[1/5] Apache Kafka: fetching once with Maven (cached after), starting on 127.0.0.1")
    cluster = localkafka.start(kafka_dir, cache_dir=settings.cache_dir, progress=say)
    worker: WorkerProcess | None = None
    try:
        settings = replace(
            settings,
            kafka_bootstrap=cluster.bootstrap,
            topic_prefix="demo.",
            app_id="segue-demo",
            data_dir=root,
            web_port=_free_port(),
            # Decisions are answered on the demo's clock, 180 times faster, and a decision
            # teaches when its window ends. The default 3 days would be 24 minutes here,
            # past the end of the run, and the contact policy's caps keep a customer's
            # decisions too few to push one another out: an hour (20 s) lets the model
            # learn within the run. Clicks come within minutes, most orders within it.
            attribution_window_seconds=DEMO_ATTRIBUTION_SECONDS,
        )
        say(f"      broker at {cluster.bootstrap}")
        say("[2/5] creating topics; publishing the demo journeys (waits 180x shorter)")
        asyncio.run(create_topics(settings, report=lambda line: None))
        demo_journeys = root / "demo_journeys.yaml"
        demo_journeys.write_text(compressed(default_catalogue_text(), DEMO_TIME_FACTOR))
        asyncio.run(publish(settings, demo_journeys, now_ms=time.time_ns() // 1_000_000))
        say("[3/5] starting the worker (log: " + str(root / "worker.log") + ")")
        worker = WorkerProcess(settings, root / "worker.log")
        worker.start()
        tally = asyncio.run(_simulate(settings, opts, worker))
        print_summary(tally, opts)
        return 0
    finally:
        say("[5/5] stopping the worker and the broker")
        if worker is not None:
            worker.stop()
        localkafka.stop(kafka_dir)
        say("      stopped; nothing left running")


async def _simulate(settings: Settings, opts: DemoOptions, worker: WorkerProcess) -> Tally:
    names = TopicNames(settings.topic_prefix)
    decide_cfg = DecideConfig(
        holdout_share=settings.holdout_share, holdout_salt=settings.holdout_salt
    )
    pop = Population(
        opts.customers,
        seed=opts.seed,
        anonymous_share=opts.anonymous_share,
        time_scale=1 / DEMO_TIME_FACTOR,
    )
    tally = Tally()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(
        names.decision_log,
        names.dlq,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    ready = asyncio.Event()
    started = time.monotonic()

    async def send(source: str, key: bytes | None, value: bytes) -> None:
        await producer.send(names.source(source), value=value, key=key)

    async def receive() -> None:
        async for msg in consumer:
            if msg.topic == names.dlq:
                reason = dict(msg.headers).get(ERROR_CLASS, b"?").decode()
                tally.dead_letters[reason] += 1
                continue
            d: dict[str, Any] = orjson.loads(msg.value or b"{}")
            if d["customer_id"] == WARMUP_CUSTOMER:
                ready.set()
                continue
            delay = d["decided_at_ms"] - d["event_time_ms"]
            if d.get("journey"):
                tally.journey_decisions[(d["journey"], d["action"], d["channel"] or "-")] += 1
                if d["event_source"] == TIMER_SOURCE:
                    tally.timer_delays_ms.append(delay)
            else:
                tally.decisions_seen += 1
                tally.decisions[(d["action"], d["channel"] or "-")] += 1
                tally.latencies_ms.append(delay)
            if d["action"] == "none":
                continue
            # Answered on the demo's clock: clicks in seconds, silence until the window.
            converted = pop.answer(d, time.time_ns() // 1_000_000)
            # The lift is the model's: journey steps are the catalogue's choices.
            expected = None if d.get("journey") else pop.expected(d)
            if expected is not None:
                late = time.monotonic() - started > opts.duration_s / 2
                tally.marketing.append((late, *expected, converted))

    async def react() -> None:
        while True:
            for ev in pop.due(time.time_ns() // 1_000_000):
                source = ev.pop("source")
                tally.sent[source] += 1
                count_group(tally, decide_cfg, source, ev)
                await send(source, ev["customer_id"].encode(), orjson.dumps(ev))
            await asyncio.sleep(0.05)

    receiver = asyncio.create_task(receive())
    reactor = asyncio.create_task(react())
    try:
        say("      waiting for the worker to join the group and answer a warm-up event")
        await _warm_up(send, ready, worker)
        say(
            f"[4/5] simulating {opts.customers} customers at {opts.rate:.0f} activities/s "
            f"for {opts.duration_s:.0f}s"
        )
        started = time.monotonic()
        await _offer_load(pop, opts, tally, send, started, worker, decide_cfg)
        await producer.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            tally.decisions_seen < tally.triggers_sent
            or sum(tally.dead_letters.values()) < tally.invalid_sent
        ):
            await asyncio.sleep(0.5)
        _progress(tally, time.monotonic() - started, final=True)
    finally:
        receiver.cancel()
        reactor.cancel()
        await asyncio.gather(receiver, reactor, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return tally


async def _warm_up(send: Any, ready: asyncio.Event, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 120
    n = 0
    while not ready.is_set():
        if not worker.alive:
            raise DemoError(f"the worker exited during start-up:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise DemoError("the worker did not answer within 120 s")
        n += 1
        ev = {
            "event_id": f"warmup-{n}",
            "customer_id": WARMUP_CUSTOMER,
            "type": "login",
            "time": time.time_ns() // 1_000_000,
        }
        await send("web", WARMUP_CUSTOMER.encode(), orjson.dumps(ev))
        try:
            await asyncio.wait_for(ready.wait(), timeout=3)
        except TimeoutError:
            continue


async def _offer_load(
    pop: Population,
    opts: DemoOptions,
    tally: Tally,
    send: Any,
    started: float,
    worker: WorkerProcess,
    decide_cfg: DecideConfig,
) -> None:
    done = 0
    next_report = started + 5
    while (elapsed := time.monotonic() - started) < opts.duration_s:
        if not worker.alive:
            raise DemoError(f"the worker died:\n{worker.log_tail()}")
        due = int(elapsed * opts.rate) - done
        now_ms = time.time_ns() // 1_000_000
        for _ in range(due):
            done += 1
            if pop.rng.random() < opts.invalid_share:
                source, key, value = pop.invalid_record()
                tally.invalid_sent += 1
                await send(source, key, value)
                continue
            for ev in pop.activity(now_ms):
                source = ev.pop("source")
                tally.sent[source] += 1
                count_group(tally, decide_cfg, source, ev)
                known = "customer_id" in ev
                # Anonymous visitors are profiled but not decided until they log in.
                tally.triggers_sent += known and f"{source}.{ev['type']}" in TRIGGERS
                tally.anonymous_sent += not known
                tally.stitched += known and "anonymous_id" in ev
                who = ev["customer_id"] if known else ev["anonymous_id"]
                await send(source, who.encode(), orjson.dumps(ev))
        if time.monotonic() >= next_report:
            _progress(tally, elapsed)
            next_report += 5
        await asyncio.sleep(0.01)


def count_group(tally: Tally, cfg: DecideConfig, source: str, ev: dict[str, Any]) -> None:
    """Count a known customer's event for the treated-versus-holdout report: the worker
    puts each customer in a group by the same stable hash."""
    customer = ev.get("customer_id")
    if not isinstance(customer, str):
        return
    group = group_of(customer, cfg)
    g = tally.groups.setdefault(group, GroupTally())
    g.customers.add(customer)
    if source == "purchase" and ev.get("type") == "order_placed":
        g.buyers.add(customer)
        g.revenue += float(ev.get("amount") or 0.0)


def _progress(t: Tally, elapsed: float, final: bool = False) -> None:
    acted = sum(n for (action, _), n in t.decisions.items() if action != "none")
    label = "drained" if final else f"t={elapsed:4.0f}s"
    say(
        f"      {label}  events sent {sum(t.sent.values()) + t.invalid_sent:7d}  "
        f"decisions {t.decisions_seen:6d} (acting {acted})  "
        f"dead-lettered {sum(t.dead_letters.values())}  "
        f"p50 {_pct(t.latencies_ms, 50):.0f} ms"
    )


def print_summary(t: Tally, opts: DemoOptions) -> None:
    sent = sum(t.sent.values()) + t.invalid_sent
    lines = ["", "Segue demo summary", "=================="]
    by_source = ", ".join(f"{s} {n}" for s, n in sorted(t.sent.items()))
    lines.append(f"events in          {sent} ({by_source}, invalid {t.invalid_sent})")
    lines.append(
        f"identity           {t.anonymous_sent} anonymous events, {t.stitched} visitors "
        "stitched to their customer at login"
    )
    lines.append(f"decisions          {t.decisions_seen} for {t.triggers_sent} decision points")
    for (action, channel), n in sorted(t.decisions.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {action:24} {channel:6} {n:7d}")
    acts = sum(t.journey_decisions.values())
    lines.append(f"journey decisions  {acts} (catalogue {DEMO_CATALOGUE}, time 180x faster)")
    for (journey, action, channel), n in sorted(t.journey_decisions.items()):
        lines.append(f"  {journey:18} {action:18} {channel:6} {n:7d}")
    if t.timer_delays_ms:
        lines.append(
            f"  fired by timers {len(t.timer_delays_ms)}: wake time to decision p50 "
            f"{_pct(t.timer_delays_ms, 50):.0f} ms, p99 {_pct(t.timer_delays_ms, 99):.0f} ms"
        )
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(t.dead_letters.items())) or "none"
    lines.append(f"dead-lettered      {sum(t.dead_letters.values())} ({reasons})")
    lines.append(
        f"event-to-decision  p50 {_pct(t.latencies_ms, 50):.0f} ms, "
        f"p99 {_pct(t.latencies_ms, 99):.0f} ms (event time to decision, same host clock)"
    )
    late = [m for m in t.marketing if m[0]]
    if late:
        n = len(late)
        learned = sum(m[1] for m in late) / n
        rand = sum(m[2] for m in late) / n
        oracle = sum(m[3] for m in late) / n
        observed = sum(m[4] for m in late) / n
        lift = (learned - rand) / (oracle - rand) if oracle > rand else 0.0
        lines.append(f"conversion, second half of the run ({n} marketing decisions):")
        lines.append(f"  learned policy   {learned:6.1%} expected, {observed:6.1%} observed")
        lines.append(f"  random policy    {rand:6.1%} expected on the same decisions")
        lines.append(f"  oracle policy    {oracle:6.1%} expected")
        lines.append(f"  learned lift over random is {lift:.0%} of the oracle's")
        lines.append(
            "  (early in the learning curve: benchmarks/lift.py measures about 90% of the "
            "oracle's lift after 100,000 decisions)"
        )
    lines += _groups(t)
    print("\n".join(lines), flush=True)


def _groups(t: Tally) -> list[str]:
    """Treated versus holdout (no marketing): the return on experience."""
    treated, holdout = t.groups.get("treated"), t.groups.get("holdout")
    if treated is None or holdout is None:
        return ["holdout            no customer fell in the holdout group (SEGUE_HOLDOUT_SHARE)"]
    lines = ["treated vs holdout (no marketing), over the whole run:"]
    rates = {}
    for name, g in (("treated", treated), ("holdout", holdout)):
        n = len(g.customers)
        rates[name] = (len(g.buyers) / n, g.revenue / n)
        lines.append(
            f"  {name:8} {n:6d} customers, {rates[name][0]:6.1%} ordered, "
            f"{rates[name][1]:7.2f} revenue per customer"
        )
    conv = rates["treated"][0] - rates["holdout"][0]
    rev = rates["treated"][1] - rates["holdout"][1]
    lines.append(
        f"  uplift   {conv * 100:+.1f} points of conversion, {rev:+.2f} revenue per customer "
        f"({len(holdout.customers)} holdout customers: a small group, a noisy estimate)"
    )
    return lines


def compressed(text: str, factor: int) -> str:
    r"""The catalogue ``text`` named ``demo``, every wait, timeout and cooldown divided by
    ``factor``, so a demo of minutes shows journeys that take days.

    >>> print(compressed("catalogue: default\n      wait: 1h\n  cooldown: 7d}", 180))
    catalogue: demo
          wait: 20000ms
      cooldown: 3360000ms}
    """

    def shorter(m: re.Match[str]) -> str:
        ms = int(m.group(2)) * DURATION_UNITS_MS[m.group(3)]
        return f"{m.group(1)}: {max(1, ms // factor)}ms"

    text = re.sub(r"^catalogue: \w+", f"catalogue: {DEMO_CATALOGUE}", text, flags=re.M)
    return re.sub(
        r"\b(wait|timeout|cooldown|min_gap|within|for): (\d+)(ms|s|m|h|d)\b", shorter, text
    )


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client_logs_to(path: Path) -> None:
    """Send the Kafka client's own log lines (leader moves while topics are new) to a file,
    so the terminal shows the demo's progress only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    client = logging.getLogger("aiokafka")
    client.addHandler(handler)
    client.propagate = False


def say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
