"""The Markdown tables of one ``benchmarks.end_to_end`` result, ratios to its baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NAMES = {
    "baseline": "(a) raw aiokafka loop",
    "segue_ingest": "(b) Segue ingest",
    "segue_decide": "(c) Segue decide",
}


def _num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None, digits: int = 3) -> str:
    return f"{a / b:.{digits}f}" if a is not None and b else "-"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def saturation_table(result: dict[str, Any]) -> list[str]:
    base = result.get("baseline", {}).get("saturation", {}).get("steady_events_per_second")
    lines = [
        _row(
            [
                "path",
                "events/s, steady (whole drain)",
                "steady, each drain",
                "x baseline",
                "CPU % of a core",
                "CPU µs/event",
                "peak RSS MiB",
                "broker CPU %",
                "others' CPU %",
            ]
        ),
        _row(["---"] * 9),
    ]
    for path, name in NAMES.items():
        if path not in result:
            continue
        s = result[path]["saturation"]
        steady = s["steady_events_per_second"]
        lines.append(
            _row(
                [
                    f"{name}, {result[path]['events']:,} events",
                    f"{_num(steady)} ({_num(s['events_per_second'])})",
                    # Results from before the repeated drains had one.
                    " / ".join(map(_num, s.get("drains_steady_events_per_second", [steady]))),
                    _ratio(steady, base),
                    _num(s["cpu_percent_of_one_core"]),
                    _num(s["cpu_microseconds_per_event"]),
                    _num(s["peak_rss_mib"]),
                    _num(s["broker_cpu_percent"]),
                    _num(s["other_cpu_percent"]),
                ]
            )
        )
    return lines


def latency_table(result: dict[str, Any]) -> list[str]:
    base_p99 = {
        r["offered_per_second"]: (r.get("produced") or {}).get("p99_ms")
        for r in result.get("baseline", {}).get("fixed_loads", [])
    }
    lines = [
        _row(
            [
                "path",
                "offered/s (sent/s)",
                "produced p50 ms",
                "p99 ms",
                "p999 ms",
                "received p50 ms",
                "p99 ms",
                "samples",
                "p99 x baseline",
                "CPU % of a core",
                "RSS MiB",
                "broker CPU %",
                "load gen CPU %",
                "others' CPU %",
            ]
        ),
        _row(["---"] * 14),
    ]
    for path, name in NAMES.items():
        if path not in result:
            continue
        for r in result[path]["fixed_loads"]:
            lat, got = r.get("produced"), r.get("latency")
            if lat and got:
                figures = [
                    _num(lat["p50_ms"], 1),
                    _num(lat["p99_ms"], 1),
                    _num(lat["p999_ms"], 1),
                    _num(got["p50_ms"], 1),
                    _num(got["p99_ms"], 1),
                    f"{lat['samples']:,}",
                    _ratio(lat["p99_ms"], base_p99.get(r["offered_per_second"]), 2),
                ]
            else:
                why = r["verdict"]
                figures = [why if why.startswith("not run") else f"not sustained: {why}"]
                figures += [""] * 6
            lines.append(
                _row(
                    [
                        name,
                        f"{r['offered_per_second']:,} ({_num(r.get('sent_per_second'))})",
                        *figures,
                        _num(r.get("cpu_percent_of_one_core")),
                        _num(r.get("rss_mib")),
                        _num(r.get("broker_cpu_percent")),
                        _num(r.get("loadgen_cpu_percent")),
                        _num(r.get("other_cpu_percent")),
                    ]
                )
            )
    return lines


def markdown(result: dict[str, Any], *, source: str) -> str:
    """Both tables with a line on where and under what load they were measured."""
    m = result.get("machine", {})
    head = (
        f"`{source}`: {m.get('cpus', '?')} CPUs, speed index "
        f"{m.get('speed_index_ms_at_start', '?')} ms at the start and "
        f"{m.get('speed_index_ms', '?')} at the end (lower is faster), load average "
        f"{m.get('load_average_1min_at_start', 0):.2f} at the start and "
        f"{m.get('load_average_1min_at_end', 0):.2f} at the end; Apache Kafka "
        f"{m.get('kafka', '?')}, faust-streaming {m.get('faust-streaming', '?')}, "
        f"aiokafka {m.get('aiokafka', '?')}, Python {m.get('python', '?')}; "
        f"{result.get('partitions', '?')} partitions; run took {result.get('run_seconds', '?')} s."
    )
    return "\n".join(
        [
            head,
            "",
            "Saturation (a preloaded backlog drained; steady = between 10% and 90% of it; "
            "of several drains, each by a fresh consumer, the one with the median steady "
            "rate):",
            "",
            *saturation_table(result),
            "",
            "Event-to-output latency at fixed offered loads (open loop; first 3 s left out): "
            "to the output produced (appended to its topic) and received by a consumer:",
            "",
            *latency_table(result),
            *disturbances(result),
        ]
    )


DISTURBED_PERCENT = 5.0
"""Over this much of a core used beside the measured processes, a measurement is disturbed."""


def disturbances(result: dict[str, Any]) -> list[str]:
    """A line for each measurement that others' CPU disturbed, naming where that went."""
    lines = []
    for path, name in NAMES.items():
        if path not in result:
            continue
        measured = [("backlog drain", result[path]["saturation"])]
        measured += [
            (f"{r['offered_per_second']:,}/s offered", r) for r in result[path]["fixed_loads"]
        ]
        for what, r in measured:
            other, by_source = r.get("other_cpu_percent"), r.get("other_cpu_by_source")
            if other is None or other <= DISTURBED_PERCENT or not by_source:
                continue
            named = ", ".join(
                f"{source} {_num(pct)}" for source, pct in by_source.items() if pct >= 1.0
            )
            lines.append(f"- {name}, {what}: others' {_num(other)}% of a core: {named}")
    if not lines:
        return []
    return ["", "Others' CPU (% of a core) where it disturbed a measurement:", "", *lines]
