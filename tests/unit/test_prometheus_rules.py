"""Scenario: an operator deploys deploy/prometheus and deploy/grafana as they are.

We expect promtool to accept the scrape config and the rules, the rules' own unit tests to
pass, and every dashboard query to be valid PromQL over metrics Segue exports or the
recording rules define. A missing promtool fails the run: these checks are never skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "segue-dashboard.json"
INSTALL_HINT = "promtool is missing: apt-get install prometheus (or run `make system-deps`)"

# The parts of the exposition each metric type writes (prometheus_client: a counter's
# ``_created`` is left out, no query reads it).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
}


def exported_series() -> set[str]:
    """The series names a worker's /metrics can hold: every family of engine/metrics.py's
    registry, read from the registry itself so that a metric added, renamed or removed
    there is what the dashboard's queries are checked against; and Prometheus's own
    ``up``."""
    names = {"up"}
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


# Grafana's variables, replaced by values Prometheus can parse.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": "segue",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "Inf", "NaN", "inf", "nan"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(INSTALL_HINT)
    return subprocess.run(
        [exe, *args], cwd=PROMETHEUS, input=stdin, capture_output=True, text=True, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n" + (
        result.stdout + result.stderr
    )


def test_scrape_config_is_valid() -> None:
    assert_ok(promtool("check", "config", "prometheus.yml"))


def test_rules_are_valid() -> None:
    assert_ok(promtool("check", "rules", "segue-rules.yml"))


def test_rules_unit_tests_pass() -> None:
    assert_ok(promtool("test", "rules", "segue-rules.test.yml"))


def test_every_alert_has_severity_summary_and_a_hold_time() -> None:
    groups = yaml.safe_load((PROMETHEUS / "segue-rules.yml").read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "SegueHighDecisionLatency",
        "SegueConsumerLag",
        "SegueDeadLetterRate",
        "SegueCommitsStalled",
        "SegueWorkerDown",
    }
    for a in alerts:
        assert a["labels"]["severity"] in {"warning", "critical"}, a["alert"]
        assert {"summary", "description"} <= set(a["annotations"]), a["alert"]
        assert a.get("for"), a["alert"]
    tested = (PROMETHEUS / "segue-rules.test.yml").read_text()
    for a in alerts:
        assert f"alertname: {a['alert']}" in tested, f"{a['alert']} has no promtool test"


def recorded_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "segue-rules.yml").read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows included."""
    doc = json.loads(DASHBOARD.read_text())

    def walk(panels: list[dict[str, Any]]) -> list[tuple[str, str]]:
        found = []
        for panel in panels:
            found += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
            found += walk(panel.get("panels", []))
        return found

    return walk(doc["panels"])


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions,
    keywords, label names or literals."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    idents = re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr)
    return {m[1] for m in idents if not m[2] and m[1] not in PROMQL_WORDS}


def promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def test_dashboard_queries_use_known_metrics_and_parse(tmp_path: Path) -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 36
    assert any(v["type"] == "datasource" for v in doc["templating"]["list"])
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    known = exported_series() | recorded_names()
    for title, expr in exprs:
        unknown = metric_names(expr) - known
        assert not unknown, f"panel {title!r} queries unknown series {sorted(unknown)}: {expr}"
    # promtool parses PromQL when it checks rules: check each query as a recording rule.
    rules = [
        {"record": f"dashboard:query:{i}", "expr": promql(e)} for i, (_, e) in enumerate(exprs)
    ]
    parsed = tmp_path / "dashboard-queries.yml"
    parsed.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(promtool("check", "rules", str(parsed)))


def test_metric_names_sees_through_functions_and_labels() -> None:
    expr = (
        'histogram_quantile(0.99, sum(rate(segue_event_to_decision_seconds_bucket{le!="1"}'
        "[$__rate_interval])) by (le)) and on (job) up offset 5m"
    )
    assert metric_names(expr) == {"segue_event_to_decision_seconds_bucket", "up"}
    assert metric_names("sum(segue_no_such_metric) * 1e3") == {"segue_no_such_metric"}


def test_exported_series_are_what_a_scrape_holds() -> None:
    # Read from the registry: the latency histogram's parts and a counter's ``_total``,
    # not its family name alone.
    series = exported_series()
    assert {
        "segue_event_to_decision_seconds_bucket",
        "segue_event_to_decision_seconds_count",
        "segue_events_consumed_total",
        "segue_profiles_unwritten",
        "segue_build_info",
    } <= series
    assert "segue_events_consumed" not in series
    assert "segue_event_to_decision_seconds" not in series


def test_rules_read_only_exported_or_recorded_series() -> None:
    groups = yaml.safe_load((PROMETHEUS / "segue-rules.yml").read_text())["groups"]
    known = exported_series() | recorded_names()
    for rule in (r for g in groups for r in g["rules"]):
        name = rule.get("alert") or rule["record"]
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"rule {name} reads unknown series {sorted(unknown)}"
