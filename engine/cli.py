"""The ``segue`` command line.

Every failure a user can cause or fix (no Java, a taken port, a broker that is not
there, a bad setting) ends in one line on stderr and exit status 1, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.settings import Settings, SettingsError

if TYPE_CHECKING:
    from engine.deadletters import DeadLetter


class CommandError(Exception):
    """A one-line reason for the user; printed as ``segue: <reason>``."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    try:
        return run(args, Settings.from_env())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"segue: {exc}", file=sys.stderr)
        return 1


def _is_user_error(exc: Exception) -> bool:
    from engine.admin import AdminError
    from engine.demo import DemoError
    from engine.localkafka import LocalKafkaError

    return isinstance(exc, CommandError | SettingsError | AdminError | LocalKafkaError | DemoError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segue", description="Real-time customer journey orchestration on Apache Kafka."
    )
    sub = p.add_subparsers(title="commands")

    kafka = sub.add_parser("kafka", help="a local Apache Kafka (KRaft) for development and tests")
    ksub = kafka.add_subparsers(title="kafka commands")
    fetch = ksub.add_parser("fetch", help="download the pinned Apache Kafka once (needs mvn)")
    fetch.set_defaults(run=_kafka_fetch)
    start = ksub.add_parser("start", help="fetch (once) and start a local broker on 127.0.0.1")
    start.add_argument("--port", type=int, default=0, help="listener port (default: a free one)")
    start.add_argument("--data-dir", type=Path, help="default: $SEGUE_DATA_DIR/kafka")
    start.add_argument("--brokers", type=int, default=1, help="nodes in the cluster (1 or 3)")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for it")
    start.set_defaults(run=_kafka_start)
    stop = ksub.add_parser("stop", help="stop the local broker started from --data-dir")
    stop.add_argument("--data-dir", type=Path)
    stop.set_defaults(run=_kafka_stop)
    status = ksub.add_parser("status", help="is the local broker running, and where")
    status.add_argument("--data-dir", type=Path)
    status.set_defaults(run=_kafka_status)

    cfg = sub.add_parser("config", help="print the effective configuration, secrets masked")
    cfg.set_defaults(run=_config)

    topics = sub.add_parser("topics", help="the topic catalogue")
    tsub = topics.add_subparsers(title="topics commands")
    create = tsub.add_parser("create", help="create the catalogue's topics (idempotent)")
    create.add_argument("--partitions", type=int, help="default: $SEGUE_PARTITIONS")
    create.add_argument("--replication-factor", type=int, help="default: $SEGUE_REPLICATION_FACTOR")
    create.set_defaults(run=_topics_create)
    tlist = tsub.add_parser("list", help="the catalogue and what exists on the cluster")
    tlist.set_defaults(run=_topics_list)

    dlq = sub.add_parser("dlq", help="the dead-letter topic: inspect and re-drive rejected records")
    dsub = dlq.add_subparsers(title="dlq commands")
    inspect = dsub.add_parser("inspect", help="list dead letters (a snapshot; commits nothing)")
    redrive = dsub.add_parser("redrive", help="re-publish dead letters to their source topics")
    for p_ in (inspect, redrive):
        p_.add_argument(
            "--reason",
            action="append",
            default=[],
            metavar="R",
            help="error class, e.g. malformed_json (repeatable)",
        )
        p_.add_argument(
            "--since",
            metavar="T",
            help="rejected at or after T: RFC 3339, epoch ms, or an age like 15m, 2h, 7d",
        )
        p_.add_argument("--until", metavar="T", help="rejected before T (same forms)")
        p_.add_argument("--topic", metavar="SOURCE", help="source topic, e.g. cx.web")
    inspect.add_argument(
        "--limit", type=int, default=200, metavar="N", help="at most N, the oldest (200)"
    )
    inspect.add_argument("--values", action="store_true", help="preview each value")
    inspect.set_defaults(run=_dlq_inspect)
    redrive.add_argument("--limit", type=int, metavar="N", help="at most N, the oldest")
    redrive.add_argument("--all", action="store_true", help="allow re-driving without any filter")
    redrive.add_argument("--dry-run", action="store_true", help="say what would go; send nothing")
    redrive.add_argument("--yes", action="store_true", help="do not ask before sending")
    redrive.set_defaults(run=_dlq_redrive)

    contracts = sub.add_parser("contracts", help="the event contracts' JSON Schema files")
    csub = contracts.add_subparsers(title="contracts commands")
    export = csub.add_parser("export", help="write topics/schemas from topics/contracts.py")
    export.add_argument("--dir", type=Path, help="default: topics/schemas in the project")
    export.set_defaults(run=_contracts_export)
    check = csub.add_parser(
        "check", help="exit 1 when the files drift from the code or a version breaks its consumers"
    )
    check.add_argument("--dir", type=Path, help="default: topics/schemas in the project")
    check.set_defaults(run=_contracts_check)

    journeys = sub.add_parser("journeys", help="journey catalogues (YAML)")
    jsub = journeys.add_subparsers(title="journeys commands")
    validate = jsub.add_parser(
        "validate", help="check a catalogue file; exit 1 listing file:line:column problems"
    )
    validate.add_argument("file", type=Path)
    validate.set_defaults(run=_journeys_validate)
    publish = jsub.add_parser(
        "publish",
        help="validate a catalogue and publish it on the control topic: every worker "
        "switches to it without a restart (its version must exceed the one in force)",
    )
    publish.add_argument("file", type=Path)
    publish.set_defaults(run=_journeys_publish)
    current = jsub.add_parser("current", help="the catalogue in force on the control topic")
    current.set_defaults(run=_journeys_current)

    from engine.cli_decisions import register as register_decision_tools

    register_decision_tools(sub)  # explain, evaluate

    model = sub.add_parser("model", help="the learned model on the model topic")
    msub = model.add_subparsers(title="model commands")
    show = msub.add_parser(
        "show", help="the latest snapshot per app and policy: version, updates, age, size"
    )
    show.set_defaults(run=_model_show)

    worker = sub.add_parser("worker", help="run the Faust worker (ingest, profile, decide)")
    worker.set_defaults(run=_worker)

    demo = sub.add_parser("demo", help="the whole loop on a local broker with simulated customers")
    demo.add_argument("--customers", type=int, default=10_000)
    demo.add_argument("--duration", type=float, default=90.0, help="seconds of simulated traffic")
    demo.add_argument("--rate", type=float, default=400.0, help="offered events per second")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)
    return p


def _kafka_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.data_dir) if args.data_dir else settings.data_dir / "kafka"


def _kafka_fetch(args: argparse.Namespace, settings: Settings) -> int:
    import engine.localkafka as localkafka

    libs = localkafka.ensure_distribution(
        settings.cache_dir, progress=lambda line: print(line, file=sys.stderr)
    )
    print(f"Apache Kafka {localkafka.KAFKA_VERSION} ready in {libs}")
    return 0


def _kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    import engine.localkafka as localkafka

    cluster = localkafka.start(
        _kafka_dir(args, settings),
        cache_dir=settings.cache_dir,
        port=args.port,
        brokers=args.brokers,
        timeout=args.timeout,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(cluster.bootstrap)
    return 0


def _kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    import engine.localkafka as localkafka

    data_dir = _kafka_dir(args, settings)
    print("stopped" if localkafka.stop(data_dir) else f"nothing running from {data_dir}")
    return 0


def _kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    import engine.localkafka as localkafka

    data_dir = _kafka_dir(args, settings)
    info = localkafka.status(data_dir)
    if info is None:
        print(f"not running (nothing started from {data_dir})")
        return 3
    for node in info.nodes:
        state = f"pid {node.pid}" if node.pid else "stopped"
        print(f"node {node.node_id}: 127.0.0.1:{node.port} {state}")
    alive = [n for n in info.nodes if n.pid]
    print(f"bootstrap {info.bootstrap}: {len(alive)} of {len(info.nodes)} nodes running")
    return 0 if alive else 3


def _config(args: argparse.Namespace, settings: Settings) -> int:
    for env, value, default, doc in settings.describe():
        marker = "" if value == default else "   (set)"
        print(f"{env}={value}{marker}\n    {doc} Default: {default or '(empty)'}")
    return 0


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from engine.admin import create_topics

    overrides = {}
    if args.partitions is not None:
        overrides["partitions"] = args.partitions
    if args.replication_factor is not None:
        overrides["replication_factor"] = args.replication_factor
    settings = replace(settings, **overrides)
    settings.validate()
    asyncio.run(create_topics(settings))
    return 0


def _topics_list(args: argparse.Namespace, settings: Settings) -> int:
    from engine.admin import describe

    for st in asyncio.run(describe(settings)):
        where = "missing" if st.partitions is None else f"{st.partitions} partitions"
        print(f"{st.spec.name:32} {where:16} {st.spec.purpose}")
    return 0


def _dlq_letters(args: argparse.Namespace, settings: Settings) -> list[DeadLetter]:
    import time

    from engine.deadletters import Filter, parse_time, read_dead_letters

    now_ms = time.time_ns() // 1_000_000
    try:
        flt = Filter(
            reasons=frozenset(args.reason),
            since_ms=None if args.since is None else parse_time(args.since, now_ms),
            until_ms=None if args.until is None else parse_time(args.until, now_ms),
            source_topic=args.topic,
        )
        return asyncio.run(read_dead_letters(settings, flt, limit=args.limit))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _dlq_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from engine.deadletters import format_table, summarize

    letters = _dlq_letters(args, settings)
    print(format_table(letters, show_values=args.values))
    if letters:
        print(f"\n{summarize(letters)}")
    return 0


def _dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from engine.deadletters import redrive

    if not (args.reason or args.since or args.until or args.topic or args.limit or args.all):
        # Re-driving everything also re-sends tombstones and oversized records that will
        # only be rejected again: make the operator say so.
        raise CommandError("name what to re-drive (--reason, --since, --topic, ...) or --all")
    letters = _dlq_letters(args, settings)
    plan = asyncio.run(redrive(settings, letters, dry_run=True))
    print(plan.describe())
    if args.dry_run or plan.count == 0:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("not a terminal: pass --yes to re-drive without asking")
        if input(f"re-drive {plan.count} to their source topics? [y/N] ").strip().lower() != "y":
            return 1
    print(asyncio.run(redrive(settings, letters)).describe())
    return 0


def _contracts_export(args: argparse.Namespace, settings: Settings) -> int:
    from topics.schema_export import SCHEMA_DIR, export_all

    written = export_all(args.dir or SCHEMA_DIR)
    print(f"{len(written)} schema files in {args.dir or SCHEMA_DIR}")
    return 0


def _contracts_check(args: argparse.Namespace, settings: Settings) -> int:
    from topics.compat import check_history
    from topics.contracts import HISTORY
    from topics.schema_export import SCHEMA_DIR, check_exported

    problems = check_exported(args.dir or SCHEMA_DIR) + check_history(HISTORY)
    for problem in problems:
        print(problem)
    if problems:
        raise CommandError(f"{len(problems)} contract problems (listed above)")
    print("schema files match topics/contracts.py; every version is compatible")
    return 0


def _journeys_validate(args: argparse.Namespace, settings: Settings) -> int:
    from engine.journey_loader import load_catalogue
    from engine.journeys import CatalogueError

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from None
    try:
        cat = load_catalogue(text, filename=str(args.file))
    except CatalogueError as err:
        print(err)
        raise CommandError(f"{len(err.problems)} problems in {args.file}") from None
    print(
        f"{args.file}: catalogue {cat.name!r} version {cat.version}: "
        f"{len(cat.journeys)} journeys, digest {cat.digest[:12]}"
    )
    return 0


def _journeys_publish(args: argparse.Namespace, settings: Settings) -> int:
    from engine.control import PublishError, publish
    from engine.journeys import CatalogueError
    from engine.timers import SystemClock
    from topics.catalogue import TopicNames

    try:
        cat = asyncio.run(publish(settings, args.file, now_ms=SystemClock().now_ms()))
    except CatalogueError as err:
        print(err)
        raise CommandError(f"{len(err.problems)} problems in {args.file}; not published") from None
    except PublishError as err:
        raise CommandError(str(err)) from None
    topic = TopicNames(settings.topic_prefix).control
    print(f"published {cat.name}@{cat.version} (digest {cat.digest[:12]}) to {topic}")
    return 0


def _journeys_current(args: argparse.Namespace, settings: Settings) -> int:
    from engine.control import latest

    cat = asyncio.run(latest(settings))
    if cat is None:
        print("no catalogue published: workers run their built-in or configured catalogue")
        return 0
    names = ", ".join(j.id for j in cat.journeys)
    print(f"{cat.name}@{cat.version} (digest {cat.digest[:12]}): {names}")
    return 0


def _model_show(args: argparse.Namespace, settings: Settings) -> int:
    from engine.model_store import latest_values
    from engine.timers import SystemClock
    from models.features import LAYOUT
    from models.snapshot import SnapshotError, read_header

    snapshots = asyncio.run(latest_values(settings, None))
    if not snapshots:
        print("no model snapshot published: workers start with a fresh model")
        return 0
    now_ms = SystemClock().now_ms()
    for key, recent in sorted(snapshots.items()):
        where, value = recent[-1]
        try:
            h = read_header(value)  # checks the bytes; unpickles nothing
        except SnapshotError as err:
            print(f"{key.decode()}: unreadable snapshot at {where}: {err}")
            continue
        age = max(0.0, (now_ms - h.created_at_ms) / 1000)
        layout = "" if h.layout == LAYOUT else " (other feature layout: this build starts fresh)"
        print(
            f"{key.decode()}: {h.version} ({h.policy_class}), {h.updates} updates, "
            f"taken {age:.0f} s ago, {len(value)} bytes, at {where}{layout}"
        )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    import uvloop

    # The worker's one event loop (its consumer's too: engine/transport.py) is
    # uvloop's: the loop's own work (tasks, callbacks, sockets) is a tenth of a deciding
    # worker's CPU with asyncio's loop; make bench path (c) drained 3,132-3,390 decision
    # points/s with uvloop against 2,492-2,801/s without, alternating on one machine.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    from engine.admin import check_inputs
    from engine.app import build_app, fresh_policy
    from engine.control import latest
    from engine.model_store import restore

    asyncio.run(check_inputs(settings))
    # The catalogue in force, read before the worker consumes anything: no record is
    # processed under a catalogue already replaced. The worker then follows the topic.
    # The model likewise: no decision is made by a fresh model when one was learned.
    model = asyncio.run(restore(settings, fresh_policy(settings)))
    app = build_app(settings, asyncio.run(latest(settings)), model)
    from engine.logs import logging_config

    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        quiet=True,
    )
    # What exists now (modules, the app, ~136,000 objects) lives as long as the process:
    # left out of every full collection, which then walks only what came since
    # (segue_gc_pause_seconds; the event loop stands still meanwhile).
    gc.freeze()
    worker.execute_from_commandline()
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from engine.demo import DemoOptions, run_demo

    options = DemoOptions(
        customers=args.customers, duration_s=args.duration, rate=args.rate, seed=args.seed
    )
    return run_demo(settings, options)


if __name__ == "__main__":
    sys.exit(main())
