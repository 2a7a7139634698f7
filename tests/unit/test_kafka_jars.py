"""Fetching Apache Kafka's jars (engine/kafka_jars.py), with stand-ins for ``java`` and
``mvn`` on PATH: one fetch per pom, a clear error when Maven fails, and the JVM command
line a node is started with. The real fetch is exercised by every integration test's
broker."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from engine import kafka_jars
from engine.kafka_jars import KAFKA_VERSION, LocalKafkaError, ensure_distribution, jvm_command

FAKE_MVN = """#!/bin/sh
# Stand-in for mvn: logs each call; writes the jars into -DoutputDirectory, or fails.
echo "$@" >> "{calls}"
if [ -n "$FAIL" ]; then
  echo "[INFO] Scanning for projects..."
  echo "[ERROR] Failed to execute goal: Could not resolve dependencies for project x"
  echo "[ERROR] To see the full stack trace of the errors, re-run Maven with -e"
  exit 1
fi
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
mkdir -p "$out"
for jar in $JARS; do touch "$out/$jar"; done
"""


def _tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jars: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls"
    for name, text in (("mvn", FAKE_MVN.format(calls=calls)), ("java", "#!/bin/sh\n")):
        tool = bin_dir / name
        tool.write_text(text)
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("JARS", jars)
    return calls


def test_the_jars_are_fetched_once_and_then_taken_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_jar = f"kafka_2.13-{KAFKA_VERSION}.jar"
    calls = _tools(tmp_path, monkeypatch, f"{kafka_jar} slf4j-api-2.0.17.jar")
    said: list[str] = []

    libs = ensure_distribution(tmp_path / "cache", progress=said.append)

    assert libs == tmp_path / "cache" / f"kafka-{KAFKA_VERSION}" / "libs"
    assert sorted(p.name for p in libs.iterdir()) == [kafka_jar, "slf4j-api-2.0.17.jar"]
    marker = json.loads((libs.parent / kafka_jars.MARKER).read_text())
    assert marker["pom_sha256"] == hashlib.sha256(kafka_jars.POM.read_bytes()).hexdigest()
    assert f"-Dkafka.version={KAFKA_VERSION}" in calls.read_text()
    assert said[-1] == "fetched 2 jars"
    assert ensure_distribution(tmp_path / "cache") == libs
    assert len(calls.read_text().splitlines()) == 1, "the second call fetched again"
    # No temporary directory of the fetch is left behind.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"kafka-{KAFKA_VERSION}"]


def test_a_cache_for_another_pom_or_missing_a_jar_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _tools(tmp_path, monkeypatch, f"kafka_2.13-{KAFKA_VERSION}.jar")
    libs = ensure_distribution(tmp_path / "cache")
    marker_file = libs.parent / kafka_jars.MARKER
    marker = json.loads(marker_file.read_text())
    marker_file.write_text(json.dumps({**marker, "pom_sha256": "0" * 64}))
    ensure_distribution(tmp_path / "cache")
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").unlink()
    ensure_distribution(tmp_path / "cache")
    assert len(calls.read_text().splitlines()) == 3
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def test_a_failed_fetch_says_why_in_one_line_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tools(tmp_path, monkeypatch, "")
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(LocalKafkaError) as err:
        ensure_distribution(tmp_path / "cache")
    assert str(err.value) == (
        f"mvn could not fetch Apache Kafka {KAFKA_VERSION}: "
        "Failed to execute goal: Could not resolve dependencies for project x"
    )
    assert list((tmp_path / "cache").iterdir()) == []


def test_maven_that_fetched_no_kafka_jar_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tools(tmp_path, monkeypatch, "slf4j-api-2.0.17.jar")
    with pytest.raises(LocalKafkaError, match=f"fetched no kafka_2.13-{KAFKA_VERSION}.jar"):
        ensure_distribution(tmp_path / "cache")


def test_a_missing_tool_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match="`java` is not on PATH"):
        ensure_distribution(tmp_path / "cache")


def test_the_jvm_runs_a_fixed_heap_with_g1_and_logs_next_to_the_node_log(tmp_path: Path) -> None:
    log = tmp_path / "node-1" / "kafka.log"
    cmd = jvm_command("/usr/bin/java", tmp_path / "libs", log, "1g")
    assert cmd[0] == "/usr/bin/java"
    assert {"-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:G1HeapRegionSize=4m"} <= set(cmd)
    assert "-XX:+ExitOnOutOfMemoryError" in cmd
    assert f"-Dkafka.log.file={log}" in cmd
    assert any(a.startswith(f"-Xlog:gc:file={tmp_path / 'node-1' / 'gc.log'}:") for a in cmd)
    assert cmd[-2:] == ["-cp", f"{tmp_path / 'libs'}/*"]
