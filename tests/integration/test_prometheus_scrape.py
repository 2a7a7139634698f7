"""Scenario: a real Prometheus scrapes a running worker.

We expect the worker's /metrics to pass `promtool check metrics`, and a Prometheus server
scraping it every second to answer the dashboard's latency quantile and the consumed
counter with numbers once decisions flow.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Segue, event, free_port

pytestmark = pytest.mark.integration

INSTALL_HINT = "{} is missing: apt-get install prometheus (or run `make system-deps`)"
P99 = "histogram_quantile(0.99, sum(rate(segue_event_to_decision_seconds_bucket[1m])) by (le))"


def executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(INSTALL_HINT.format(name))
    return path


def decide(segue: Segue, n: int) -> None:
    """Produce ``n`` decision points for fresh customers and wait until each is decided."""
    customers = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    segue.produce("web", [event("search", c, query="boots") for c in customers])
    for c in customers:
        segue.decisions(segue.names.decision_log, c, bool, timeout=20)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


@dataclass
class Prometheus:
    """A Prometheus server this test started, and where it logs."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def diagnosis(self) -> str:
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        return f"prometheus {state}; log tail:\n{self.log.read_text()[-3000:]}"


@pytest.fixture
def prometheus(segue: Segue, tmp_path: Path) -> Iterator[Prometheus]:
    """A Prometheus server scraping the worker every second, stopped by PID afterwards."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: segue\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{segue.settings.web_port}']}}]\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                executable("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_target_up(prom: Prometheus, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while time.monotonic() < deadline and prom.process.poll() is None:
        try:
            targets = get_json(f"{prom.url}/api/v1/targets")["data"]["activeTargets"]
        except OSError as err:  # not listening yet
            last = err
        else:
            last = targets
            if any(t["health"] == "up" for t in targets):
                return
        time.sleep(0.25)
    raise AssertionError(f"target never up within {timeout}s: {last}\n{prom.diagnosis()}")


def query_values(prom: Prometheus, promql: str, timeout: float) -> list[float]:
    """An instant query's sample values, once there are some and all are finite numbers."""
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        doc = get_json(url)
        assert doc["status"] == "success", doc
        result = doc["data"]["result"]
        values = [float(sample["value"][1]) for sample in result]
        if values and all(math.isfinite(v) for v in values):
            return values
        time.sleep(0.5)
    raise AssertionError(
        f"{promql} gave no finite sample within {timeout}s: {result}\n{prom.diagnosis()}"
    )


def test_exposition_passes_promtool_check_metrics(segue: Segue) -> None:
    decide(segue, 3)
    url = f"http://127.0.0.1:{segue.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        exposition = resp.read()
    check = subprocess.run(
        [executable("promtool"), "check", "metrics"],
        input=exposition,
        capture_output=True,
        check=False,
    )
    findings = (check.stdout + check.stderr).decode()
    assert check.returncode == 0, f"promtool check metrics exited {check.returncode}:\n{findings}"


def test_prometheus_scrapes_latency_and_throughput(segue: Segue, prometheus: Prometheus) -> None:
    wait_target_up(prometheus)
    # rate() needs the counters to grow between two scrapes: decide after the first one.
    decide(segue, 3)
    [p99] = query_values(prometheus, P99, timeout=30)
    assert 0 <= p99 <= 10  # the top finite bucket
    consumed = query_values(prometheus, "segue_events_consumed_total", timeout=10)
    assert sum(consumed) >= 3
