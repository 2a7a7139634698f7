"""The end-to-end benchmark's pure accounting: schedule, stamps, percentiles, verdicts."""

from __future__ import annotations

import doctest
import os
import random
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from types import ModuleType
from typing import Any

import orjson
import pytest

from benchmarks import backlog, bench_tables, openloop, rawloop, results_io
from benchmarks.openloop import (
    due,
    fixed_rates,
    percentile,
    read_output,
    stamped,
    summary,
    template_rest,
    verdict,
)
from benchmarks.procstats import CLK_TCK, MachineTicks, Process, other_cpu


@pytest.mark.parametrize("module", [openloop, backlog, rawloop])
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0


def test_an_open_loop_schedule_is_exact_and_never_ahead() -> None:
    assert [due(5000, t / 1000) for t in (0, 1, 2, 10, 1000)] == [0, 5, 10, 50, 5000]
    # Ticks of any length add up to the same count: a late tick catches up in one burst.
    assert due(1000, 0.5) + (due(1000, 20.0) - due(1000, 0.5)) == 20_000


def test_a_stamped_event_is_valid_json_and_its_output_gives_the_stamp_back() -> None:
    doc = {"customer_id": "c-1", "type": "search", "query": "shoes"}
    value = stamped(template_rest(doc, orjson.dumps(doc)), "c3", 41, 1_800_000_000_987_654_321)
    parsed = orjson.loads(value)
    assert parsed == doc | {"event_id": "Lc3-41-1800000000987654321", "time": 1_800_000_000_987}
    # A decision names the event in its event_id and stamps decided_at_ms later on.
    decision = orjson.dumps({"decision_id": "d-1", "event_id": parsed["event_id"], "x": [1]})
    decision = decision[:-1] + b',"decided_at_ms":1800000000995}'
    out = read_output(decision, "c3")
    assert out is not None
    assert (out.seq, out.sent_ns, out.decided_at_ms) == (
        41,
        1_800_000_000_987_654_321,
        1_800_000_000_995,
    )
    assert read_output(decision, "c31") is None
    assert read_output(b'{"event_id":"pv-00000001"}', "c3") is None
    assert read_output(None, "c3") is None


def test_a_template_may_not_carry_its_own_id_or_time() -> None:
    for doc in ({"event_id": "x", "type": "a"}, {"time": 1, "type": "a"}, {}):
        with pytest.raises(ValueError):
            template_rest(doc, orjson.dumps(doc))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]  # 1..1000 ms
    random.Random(1).shuffle(values)
    ordered = sorted(values)
    assert percentile(ordered, 0.5) == 500.0
    assert percentile(ordered, 0.99) == 990.0
    assert percentile(ordered, 0.999) == 999.0
    assert percentile(ordered, 1.0) == 1000.0
    assert percentile([7.0], 0.999) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile(ordered, 0.0)
    assert summary(values) == {
        "samples": 1000,
        "p50_ms": 500.0,
        "p99_ms": 990.0,
        "p999_ms": 999.0,
        "max_ms": 1000.0,
    }


def test_p999_needs_a_thousand_samples() -> None:
    assert summary([1.0] * 999)["p999_ms"] is None
    assert summary([])["samples"] == 0


def test_a_steady_backlog_is_latency_but_a_growing_one_is_not_sustained() -> None:
    assert verdict(1000, 900, 1100, aborted=False, drained=True).sustained
    grows = verdict(1000, 900, 1901, aborted=False, drained=True)
    assert not grows.sustained and grows.reason.startswith("lag grows")
    assert not verdict(1000, 0, 0, aborted=True, drained=True).sustained
    assert not verdict(1000, 0, 10, aborted=False, drained=False).sustained


def test_fixed_loads_are_ascending_and_include_80_percent_of_saturation() -> None:
    assert fixed_rates(2890.0) == [1000, 2310, 5000]
    assert fixed_rates(1250.0) == [1000, 5000]  # 80% rounds to 1,000: run once
    assert fixed_rates(5.0) == [10, 1000, 5000]
    assert fixed_rates(None) == [1000, 5000]


def test_steady_rate_leaves_out_start_up_and_drain() -> None:
    samples = [(0.0, 0.0), (5.0, 10.0), (6.0, 200.0), (7.0, 400.0), (8.0, 950.0), (20.0, 1000.0)]
    assert backlog.steady_rate(samples, 1000) == round((950 - 200) / 2, 1)
    assert backlog.steady_rate(samples[:3], 1000) is None


def test_the_raw_loop_keeps_state_per_customer() -> None:
    state: dict[str, dict[str, Any]] = {}
    for i, kind in enumerate(["product_view", "search", "product_view"]):
        doc = {"event_id": f"e{i}", "customer_id": "c1", "type": kind, "time": 10 + i}
        out = orjson.loads(rawloop.transform(doc, state, 99))
    assert out["action"] == "product_recommendation" and out["decided_at_ms"] == 99
    assert state["c1"]["events"] == 3 and state["c1"]["types"] == {"product_view": 2, "search": 1}


def test_the_tables_show_ratios_to_the_baseline_and_unsustained_loads() -> None:
    sat = {
        "steady_events_per_second": 20_000.0,
        "events_per_second": 18_000.0,
        "cpu_percent_of_one_core": 90.0,
        "cpu_microseconds_per_event": 45.0,
        "peak_rss_mib": 120.0,
        "broker_cpu_percent": 50.0,
        "other_cpu_percent": 5.0,
        "other_cpu_by_source": {"steal": 5.0},
    }
    lat = {"samples": 17_000, "p50_ms": 3.0, "p99_ms": 10.0, "p999_ms": 20.0, "max_ms": 30.0}
    got = lat | {"p50_ms": 5.0, "p99_ms": 14.0}
    ok = {"offered_per_second": 1000, "sent_per_second": 1000.0, "produced": lat, "latency": got}
    result = {
        "baseline": {"events": 1, "saturation": sat, "fixed_loads": [ok]},
        "segue_decide": {
            "events": 1,
            "saturation": sat | {"steady_events_per_second": 1000.0},
            "fixed_loads": [
                ok | {"produced": lat | {"p99_ms": 50.0}, "latency": got | {"p99_ms": 70.0}},
                {"offered_per_second": 5000, "verdict": "lag grows: ...", "sustained": False},
            ],
        },
    }
    result["machine"] = {"cpus": 2, "speed_index_ms_at_start": 58.7, "speed_index_ms": 36.6}
    text = bench_tables.markdown(result, source="x.json")
    assert text.startswith(
        "`x.json`: 2 CPUs, speed index 58.7 ms at the start and 36.6 at the end (lower is"
    )
    assert "| (c) Segue decide, 1 events | 1,000 (18,000) | 1,000 | 0.050 |" in text
    # Of several drains, the median one's figures, and every drain's steady rate.
    result["segue_decide"]["saturation"] |= {
        "drains_steady_events_per_second": [1100.0, None, 1000.0]
    }
    text = bench_tables.markdown(result, source="x.json")
    assert "| (c) Segue decide, 1 events | 1,000 (18,000) | 1,100 / - / 1,000 | 0.050 |" in text
    # Produced p50, p99, p999, then received p50 and p99; the ratio is of produced p99s.
    assert "| 1,000 (1,000) | 3.0 | 10.0 | 20.0 | 5.0 | 14.0 | 17,000 | 1.00 |" in text
    assert "| 1,000 (1,000) | 3.0 | 50.0 | 20.0 | 5.0 | 70.0 | 17,000 | 5.00 |" in text
    assert "not sustained: lag grows" in text
    assert "disturbed" not in text  # 5 % of a core beside the path is not yet a disturbance
    sources = {"steal": 21.0, "1234 /usr/bin/java -Xmx1g": 8.0, "interrupts": 0.4}
    result["segue_decide"]["fixed_loads"][0] |= {
        "other_cpu_percent": 29.7,
        "other_cpu_by_source": sources,
    }
    text = bench_tables.markdown(result, source="x.json")
    assert (
        "- (c) Segue decide, 1,000/s offered: others' 30% of a core: "
        "steal 21, 1234 /usr/bin/java -Xmx1g 8"
    ) in text.splitlines()


def test_the_rest_of_the_machine_is_split_by_source() -> None:
    pct = CLK_TCK // 100  # over a one-second window, the ticks of 1 % of a core
    a = MachineTicks(
        busy=0,
        steal=0,
        interrupts=0,
        processes={
            1: Process("path", 1, 0),
            2: Process("broker", 1, 0),
            3: Process("kworker/0:1-events", 1, 0),
            4: Process("gone", 1, 0),
            5: Process("x", 1, 0),
        },
    )
    b = MachineTicks(
        busy=100 * pct,
        steal=20 * pct,
        interrupts=5 * pct,
        processes={
            1: Process("path", 1, 40 * pct),
            2: Process("broker", 1, 10 * pct),
            # a kernel worker's name changes with its work: still the same process
            3: Process("kworker/0:1-mm_percpu_wq", 1, 15 * pct),
            # pid 5 used again by a process started within the window: all its ticks count
            5: Process("y", 9, 7 * pct),
            6: Process("tiny", 9, 0),
        },
    )
    found = other_cpu(a, b, measured=50 * pct, pids={1, 2}, wall=1.0)
    assert found["other_cpu_percent"] == 50.0
    by_source = found["other_cpu_by_source"]
    assert by_source["steal"] == 20.0 and by_source["interrupts"] == 5.0
    named = {k: v for k, v in by_source.items() if k[0].isdigit()}
    assert named == {"3 kworker/0:1-mm_percpu_wq": 15.0, "5 y": 7.0}
    # what no live process explains: the one that exited, here
    assert by_source["unaccounted"] == 3.0
    assert list(by_source.values()) == sorted(by_source.values(), reverse=True)


def test_a_busy_process_beside_the_measured_ones_is_named_by_its_command_line() -> None:
    a = MachineTicks.take()
    started = time.monotonic()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass", "spinner"])
    try:
        time.sleep(1.0)
        b = MachineTicks.take()
        wall = time.monotonic() - started
        found = other_cpu(a, b, measured=0, pids={os.getpid()}, wall=wall)
    finally:
        busy.kill()
        busy.wait()
    by_source = found["other_cpu_by_source"]
    assert f"{busy.pid} " + f"{sys.executable} -c while True: pass spinner"[:80] in by_source
    # the measured pids are never among the sources
    assert not [k for k in by_source if k.startswith(f"{os.getpid()} ")]


def test_a_result_names_the_machine_and_how_fast_it_was() -> None:
    found = results_io.machine(partitions=3)
    assert found["partitions"] == 3 and found["cpus"] == os.cpu_count()
    assert found["orjson"] == version("orjson")
    # /proc/cpuinfo names the processor on Linux, the only system the benchmarks run on
    assert isinstance(found["cpu_model"], str) and found["cpu_model"]
    assert found["speed_index_ms"] > 0


@pytest.mark.parametrize("module", ["end_to_end", "ingest"])
def test_a_broker_that_cannot_be_reached_stops_a_benchmark_in_one_line(module: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--events", "1000"] if module == "ingest" else ["--paths", "segue_decide"]
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args, "--bootstrap", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"benchmark failed: cannot reach Kafka at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
