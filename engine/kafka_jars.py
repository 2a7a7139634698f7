"""Apache Kafka's jars, fetched with Maven, and the JVM command line that runs them.

``ensure_distribution`` fetches the jars deploy/kafka/pom.xml names (Apache Kafka
``KAFKA_VERSION`` and a logging backend) with ``mvn`` into
``<cache_dir>/kafka-<version>/libs``, once: a marker file records the pom's digest and the
jars, so a changed pom fetches again and an interrupted fetch never looks complete.
``jvm_command`` is how engine/localkafka.py starts a node's JVM from them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from subprocess import DEVNULL

KAFKA_VERSION: str = "4.1.1"
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG_CONFIG = DEPLOY_DIR / "log4j2.yaml"
MARKER = ".complete"


def no_progress(message: str) -> None:
    """The default ``progress`` of the local Kafka's long steps: say nothing."""


class LocalKafkaError(Exception):
    """One-line, human-readable reason; the CLI prints str(err) and exits 1."""


def require(tool: str) -> str:
    """The path of ``tool`` on PATH, or a LocalKafkaError naming what the local Kafka needs."""
    path = shutil.which(tool)
    if path is None:
        raise LocalKafkaError(f"`{tool}` is not on PATH; the local Kafka needs Java 17+ and Maven")
    return path


def _complete(home: Path, pom_sha256: str) -> bool:
    try:
        marker = json.loads((home / MARKER).read_text())
    except (OSError, ValueError):
        return False
    # A changed pom (another jar, another slf4j) must not reuse a cache fetched for the old one.
    return bool(marker.get("pom_sha256") == pom_sha256) and all(
        (home / "libs" / jar).is_file() for jar in marker.get("jars", [])
    )


def _mvn_error(output: str) -> str:
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    boilerplate = ("To see the full stack trace", "Re-run Maven", "For more information", "[Help")
    lines = [
        ln.removeprefix("[ERROR]").strip()
        for ln in output.splitlines()
        if ln.startswith("[ERROR]")
        and ln[7:].strip()
        and not ln[7:].strip().startswith(boilerplate)
    ]
    line = lines[-1] if lines else (output.strip().splitlines() or ["no output"])[-1]
    return line.removesuffix("-> [Help 1]").strip()[:400]


def ensure_distribution(
    cache_dir: Path, *, version: str = KAFKA_VERSION, progress: Callable[[str], None] = no_progress
) -> Path:
    """Return ``<cache_dir>/kafka-<version>/libs``, fetching the jars with mvn if needed."""
    require("java")
    home = cache_dir / f"kafka-{version}"
    try:
        pom_sha256 = hashlib.sha256(POM.read_bytes()).hexdigest()
    except OSError as err:
        raise LocalKafkaError(f"cannot read {POM}: {err.strerror}") from err
    if _complete(home, pom_sha256):
        return home / "libs"
    mvn = require("mvn")
    cache_dir.mkdir(parents=True, exist_ok=True)
    progress(f"fetching Apache Kafka {version} with Maven into {home}")
    # Fetch into a temp dir and rename it: an interrupted fetch never looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-", dir=cache_dir))
    try:
        goal = "-q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime"
        out = f"-DoutputDirectory={tmp / 'libs'}"
        cmd = [mvn, "-f", str(POM), *goal.split(), out, f"-Dkafka.version={version}"]
        try:
            proc = subprocess.run(cmd, stdin=DEVNULL, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as err:
            raise LocalKafkaError(f"mvn did not fetch Apache Kafka {version} in 900 s") from err
        if proc.returncode != 0:
            reason = _mvn_error(proc.stdout + "\n" + proc.stderr)
            raise LocalKafkaError(f"mvn could not fetch Apache Kafka {version}: {reason}")
        jars = sorted(p.name for p in (tmp / "libs").glob("*.jar"))
        if f"kafka_2.13-{version}.jar" not in jars:
            raise LocalKafkaError(f"mvn ran but fetched no kafka_2.13-{version}.jar")
        (tmp / MARKER).write_text(json.dumps({"pom_sha256": pom_sha256, "jars": jars}))
        if home.exists():
            shutil.rmtree(home)  # an incomplete or outdated fetch
        try:
            tmp.rename(home)
        except OSError:
            if not _complete(home, pom_sha256):  # else a concurrent fetch won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"fetched {len(jars)} jars")
    return home / "libs"


def jvm_command(java: str, libs: Path, log_file: Path, heap: str) -> list[str]:
    """The JVM and its flags for a node that logs to ``log_file``: the main class and its
    arguments follow."""
    # ExitOnOutOfMemoryError: a half-dead broker would keep its pid and look healthy.
    flags = f"-Xms{heap} -Xmx{heap} -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
    # G1, as Kafka's own start script runs it, with regions of 4 MiB: at 1 MiB (a small
    # heap's default) every buffer of 512 KiB or more, such as a worker's produce request
    # (engine/app.py, OUTPUT_BATCH_BYTES), is a "humongous" allocation, and each started a
    # young pause, a concurrent cycle and its remark pause: ~90 of a make bench run's ~145
    # pauses. With a fixed 1 GiB heap and these regions, a 20 s load at 1,000 events/s saw
    # 0-1 pauses of the broker instead of 8-12 (benchmarks/README.md, seventh pass).
    flags += " -XX:+UseG1GC -XX:G1HeapRegionSize=4m"
    gc_log = f"-Xlog:gc:file={log_file.parent / 'gc.log'}:time,uptime:filecount=2,filesize=10M"
    log = [f"-Dlog4j2.configurationFile={LOG_CONFIG}", f"-Dkafka.log.file={log_file}", gc_log]
    return [java, *flags.split(), *log, "-cp", f"{libs}/*"]
