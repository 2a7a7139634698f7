"""``segue explain`` and ``segue evaluate``: reading the decision log back.

Both read snapshots of topics without a consumer group and commit nothing, like
``segue dlq inspect``. Kept apart from ``engine.cli`` so that module stays a table of
commands; the shell here only parses flags, runs a read and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.settings import Settings
from models.evaluate import Estimate, Report, TargetPolicy

DEFAULT_LOOKBACK = "7d"
DEFAULT_WINDOW_S = 86_400
_PROGRESS_EVERY_S = 2.0


def register(sub: Any) -> None:
    """Add the two commands to the ``segue`` sub-command parser ``sub``."""
    explain = sub.add_parser(
        "explain",
        help="a customer's recent decisions, explained (reads only their partition)",
    )
    explain.add_argument("customer_id")
    explain.add_argument("--limit", type=int, default=10, metavar="N", help="newest N (10)")
    explain.add_argument(
        "--since",
        metavar="T",
        default=DEFAULT_LOOKBACK,
        help=f"decided at or after T: RFC 3339, epoch ms, or an age like 2h ({DEFAULT_LOOKBACK})",
    )
    explain.add_argument("--json", action="store_true", help="the decisions as JSON")
    explain.set_defaults(run=_explain)

    evaluate = sub.add_parser(
        "evaluate",
        help="estimate what a policy would have earned on the logged decisions (off-policy)",
    )
    evaluate.add_argument(
        "--policy",
        default="greedy",
        metavar="P",
        help="greedy (the logging policy without exploration), random, or snapshot:PATH "
        "(a pickled model ranked by score x value); default greedy",
    )
    evaluate.add_argument("--since", metavar="T", help="decided at or after T (same forms)")
    evaluate.add_argument("--until", metavar="T", help="decided before T (same forms)")
    evaluate.add_argument(
        "--attribution-window",
        default=str(DEFAULT_WINDOW_S),
        metavar="S",
        help="a click or conversion counts this long after its decision: seconds, or "
        f"15m, 2h, 7d ({DEFAULT_WINDOW_S} s)",
    )
    evaluate.add_argument("--level", type=float, default=0.95, help="confidence level (0.95)")
    evaluate.add_argument("--json", action="store_true", help="the report as JSON")
    evaluate.set_defaults(run=_evaluate)


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    from engine.cli import CommandError
    from engine.deadletters import parse_time
    from engine.explain import customer_decisions, format_decisions

    now_ms = time.time_ns() // 1_000_000
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    try:
        since_ms = parse_time(args.since, now_ms)
    except ValueError as exc:
        raise CommandError(f"--since: {exc}") from None
    found = asyncio.run(
        customer_decisions(
            settings,
            args.customer_id,
            since_ms=since_ms,
            limit=args.limit,
            progress=_progress(lambda n: f"read {n} records of the customer's partition"),
        )
    )
    if found.unreadable:
        print(f"skipped {found.unreadable} unreadable records for this customer", file=sys.stderr)
    if args.json:
        doc = {
            "customer_id": args.customer_id,
            "partition": found.partition,
            "since_ms": since_ms,
            "decisions": [d.to_dict() for d in found.decisions],
        }
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    elif not found.decisions:
        print(f"no decisions for {args.customer_id} since {args.since}")
    else:
        print(format_decisions(found.decisions))
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from engine.cli import CommandError
    from engine.deadletters import parse_time
    from engine.replay import Attribution, replay
    from models.evaluate import evaluate

    now_ms = time.time_ns() // 1_000_000
    try:
        since_ms = None if args.since is None else parse_time(args.since, now_ms)
        until_ms = None if args.until is None else parse_time(args.until, now_ms)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise CommandError("--until must be later than --since")
    window_s = parse_window(args.attribution_window)
    if not 0.0 < args.level < 1.0:
        raise CommandError(f"--level must be between 0 and 1, not {args.level}")
    name, target = _target(args.policy, settings)
    attribution = Attribution(
        window_ms=window_s * 1000, now_ms=now_ms, since_ms=since_ms, until_ms=until_ms
    )
    asyncio.run(
        replay(settings, attribution, progress=_progress(lambda t, n: f"read {n} records of {t}"))
    )
    try:
        report = evaluate(attribution.logs(), target, level=args.level)
    except ValueError as exc:  # a snapshot that scores outside the logged arms, say
        raise CommandError(f"policy {name}: {exc}") from None
    tally = attribution.tally
    counts = {
        "decisions": tally.decisions,
        "evaluated": tally.evaluated,
        "skipped": dict(tally.skipped.most_common()),
        "unreadable_decisions": tally.unreadable_decisions,
        "outcomes": tally.outcomes,
        "unreadable_outcomes": tally.unreadable_outcomes,
        "rewards_attributed": tally.attributed,
        "rewards_after_window": tally.too_late,
    }
    if args.json:
        doc = {
            "policy": name,
            "since_ms": since_ms,
            "until_ms": until_ms,
            "attribution_window_s": window_s,
            "level": args.level,
            "interval": "normal approximation with the sample variance (SNIPS: delta method)",
            "counts": counts,
            **{e.name: _estimate_doc(e) for e in (report.observed, *report.estimates)},
            "effective_n": report.effective_n,
            "max_weight": report.max_weight,
        }
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(describe(name, report, counts))
    return 0


def parse_window(text: str) -> int:
    """Seconds from ``3600`` or ``15m``, ``2h``, ``7d``; CommandError otherwise.

    >>> parse_window("3600"), parse_window("2h")
    (3600, 7200)
    """
    from engine.cli import CommandError

    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip(), re.ASCII)
    seconds = int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}[m[2]] if m else 0
    if seconds <= 0:
        raise CommandError(
            f"--attribution-window {text!r}: give a positive number of seconds or 15m, 2h, 7d"
        )
    return seconds


def _target(spec: str, settings: Settings) -> tuple[str, TargetPolicy]:
    from engine.cli import CommandError
    from engine.journey_loader import default_actions
    from models.targets import greedy, load_snapshot, ranked_by, uniform

    if spec == "greedy":
        return "greedy", greedy(settings.min_score)
    if spec == "random":
        return "random", uniform
    if spec.startswith("snapshot:") and spec != "snapshot:":
        try:
            model = load_snapshot(Path(spec.removeprefix("snapshot:")))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        values = {a.action_id: a.value for a in default_actions()}
        return spec, ranked_by(model, values, settings.min_score)
    raise CommandError(f"--policy {spec!r}: give greedy, random or snapshot:PATH")


def describe(name: str, report: Report, counts: dict[str, Any]) -> str:
    """The text report of ``segue evaluate``."""
    lines = [
        f"policy {name}: {counts['evaluated']} of {counts['decisions']} decisions evaluated",
    ]
    lines += [f"  skipped {n}: {why}" for why, n in counts["skipped"].items()]
    if counts["unreadable_decisions"]:
        lines.append(f"  unreadable decision records: {counts['unreadable_decisions']}")
    lines.append(
        f"outcomes read {counts['outcomes']} (unreadable {counts['unreadable_outcomes']}); "
        f"clicks/conversions credited {counts['rewards_attributed']}, "
        f"after their window {counts['rewards_after_window']}"
    )
    lines.append("expected reward (click or conversion) per decision:")
    for e in (report.observed, *report.estimates):
        label = {"observed": "logged policy (observed)", "dr": "dr (model: logged scores)"}
        lines.append(f"  {label.get(e.name, e.name):<27}{_value(e, report.level)}")
    lines.append(
        f"effective sample size {report.effective_n:.1f} of {report.ips.n}, "
        f"largest weight {report.max_weight:.2f}"
    )
    lines.append(
        "intervals: normal approximation with the sample variance (SNIPS: delta method); "
        "they assume exact logged propensities and that the logging policy could take "
        "every arm the target takes"
    )
    return "\n".join(lines)


def _value(e: Estimate, level: float) -> str:
    if e.value is None:
        return "undefined (no decisions to weigh)"
    if e.lo is None or e.hi is None:
        return f"{e.value:.4f}"
    return f"{e.value:.4f}  {level * 100:g}% CI [{e.lo:.4f}, {e.hi:.4f}]"


def _estimate_doc(e: Estimate) -> dict[str, Any]:
    return {"value": e.value, "stderr": e.stderr, "lo": e.lo, "hi": e.hi, "n": e.n}


def _progress(line: Callable[..., str]) -> Callable[..., None]:
    """A progress callback that writes ``line(*args)`` to stderr at most every 2 s, and
    not at all for a read that ends sooner."""
    last = time.monotonic()

    def report(*args: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY_S:
            last = now
            print(line(*args), file=sys.stderr)

    return report
