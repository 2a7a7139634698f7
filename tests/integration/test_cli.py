"""Scenario: a user runs ``segue`` commands, some of them wrongly.

We expect each mistake to end in exactly one line on stderr and exit status 1, never a
traceback, and the topic catalogue to be created idempotently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import engine.localkafka as localkafka

pytestmark = pytest.mark.integration


def segue(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = segue("kafka", "start", "--port", str(port), "--data-dir", str(tmp_path))
    assert one_line_error(result) == f"segue: port 127.0.0.1:{port} is already in use"


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    env = {"PATH": str(bin_dir), "SEGUE_DATA_DIR": str(tmp_path)}
    line = one_line_error(segue("kafka", "start", env=env))
    assert line.startswith("segue: ") and "java" in line


def test_status_of_nothing_started(tmp_path: Path) -> None:
    result = segue("kafka", "status", "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 3 and "not running" in result.stdout


def test_unreachable_broker_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {"SEGUE_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}"}
    line = one_line_error(segue("topics", "create", env=env))
    assert line.startswith(f"segue: cannot reach Kafka at 127.0.0.1:{closed}")


def test_bad_setting_is_one_clear_line() -> None:
    line = one_line_error(segue("config", env={"SEGUE_PARTITIONS": "many"}))
    assert "SEGUE_PARTITIONS" in line


def test_config_masks_secrets() -> None:
    result = segue("config", env={"SEGUE_KAFKA_SASL_PASSWORD": "hunter2"})
    assert result.returncode == 0
    assert "SEGUE_KAFKA_SASL_PASSWORD=****" in result.stdout and "hunter2" not in result.stdout


def test_topics_create_is_idempotent_and_worker_checks_topics(
    kafka: localkafka.ClusterInfo,
) -> None:
    env = {
        "SEGUE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SEGUE_TOPIC_PREFIX": f"cli{uuid.uuid4().hex[:6]}.",
        "SEGUE_PARTITIONS": "2",
    }
    missing = one_line_error(segue("worker", env=env))
    assert "topics missing" in missing and "segue topics create" in missing

    first = segue("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created ") == 14
    second = segue("topics", "create", env=env)
    assert second.returncode == 0 and "created" not in second.stdout
    listed = segue("topics", "list", env=env)
    assert listed.stdout.count("2 partitions") == 14
    assert "compact" in first.stdout


def test_kcat_is_installed_for_the_interop_tests() -> None:
    assert shutil.which("kcat"), "make test installs Debian's kcat"
