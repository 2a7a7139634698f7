"""Start and stop a local Apache Kafka (KRaft mode) on 127.0.0.1.

The jars come from Maven Central through ``mvn`` (deploy/kafka/pom.xml), fetched once
into ``<cache_dir>/kafka-<version>/libs`` (engine/kafka_jars.py, which also says how a
node's JVM is started). A cluster lives in one data dir::

    <data_dir>/cluster.json               cluster id, ports and pids of the nodes
    <data_dir>/node-<id>/server.properties
    <data_dir>/node-<id>/data/            the node's Kafka log dir (formatted once)
    <data_dir>/node-<id>/kafka.log        the node's log4j output and the JVM's stdout/stderr

Every node is a combined broker + controller; n nodes form an n-voter static quorum.
Ports: ``port=0`` picks free loopback ports. An explicit ``port`` gives node i (1-based)
the Kafka port ``port + i - 1`` and the controller port ``port + brokers + i - 1``, so one
node started on 9092 uses 9092 and 9093, the usual pair. A restart reuses the recorded ports.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from subprocess import DEVNULL, PIPE, STDOUT, Popen

from engine.kafka_jars import KAFKA_VERSION as KAFKA_VERSION
from engine.kafka_jars import LocalKafkaError as LocalKafkaError
from engine.kafka_jars import ensure_distribution as ensure_distribution
from engine.kafka_jars import jvm_command, no_progress, require
from engine.kafka_node import HOST, NodeInfo, broker_ids, last_line, write_configs

STATE_FILE = "cluster.json"
MAIN_CLASS = "kafka.Kafka"
FORMAT = "kafka.tools.StorageTool format"


@dataclass(frozen=True)
class ClusterInfo:
    bootstrap: str
    data_dir: Path
    nodes: tuple[NodeInfo, ...]

    @property
    def running(self) -> bool:
        """True when at least one node runs (status reports the others with pid 0)."""
        return any(n.running for n in self.nodes)


@dataclass
class _State:
    cluster_id: str
    heap: str
    nodes: list[NodeInfo]


# Brokers started by this process. Polling them reaps them once they exit: PID 1 in some
# containers never reaps orphans, and a zombie would look alive to os.kill(pid, 0).
_children: dict[int, Popen[bytes]] = {}


def _node(data_dir: Path, node_id: int, port: int, cport: int, pid: int = 0) -> NodeInfo:
    node_dir = data_dir / f"node-{node_id}"
    return NodeInfo(node_id, port, cport, pid, node_dir, node_dir / "kafka.log")


def _bootstrap(nodes: list[NodeInfo] | tuple[NodeInfo, ...]) -> str:
    return ",".join(f"{HOST}:{n.port}" for n in nodes)


def _load(data_dir: Path) -> _State | None:
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
        nodes = [
            _node(data_dir, n["node_id"], n["port"], n["controller_port"], n["pid"])
            for n in raw["nodes"]
        ]
        return _State(raw["cluster_id"], raw["heap"], nodes)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LocalKafkaError(f"{data_dir / STATE_FILE} is unreadable: {err}") from err


def _save(data_dir: Path, state: _State) -> None:
    raw = {
        "kafka_version": KAFKA_VERSION,
        "cluster_id": state.cluster_id,
        "bootstrap": _bootstrap(state.nodes),
        "heap": state.heap,
        "nodes": [
            {key: getattr(n, key) for key in ("node_id", "port", "controller_port", "pid")}
            for n in state.nodes
        ],
    }
    tmp = data_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(data_dir / STATE_FILE)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    # Two launchers on one data dir would both format or both bind the same ports.
    with (data_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(node: NodeInfo) -> bool:
    """The recorded pid is still this node's JVM (a recycled pid is never mistaken for it)."""
    if node.pid <= 0:
        return False
    child = _children.get(node.pid)
    if child is not None:
        # Our own child: poll() is exact, while /proc/<pid>/cmdline reads empty for a moment
        # during exec and again while the JVM exits.
        if child.poll() is None:
            return True
        del _children[node.pid]
        return False
    try:
        args = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MAIN_CLASS.encode() in args and str(node.properties).encode() in args


def _check_free(port: int) -> None:
    with socket.socket() as sock:
        # Java's server sockets set SO_REUSEADDR, so TIME_WAIT leftovers do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise LocalKafkaError(f"port {HOST}:{port} is already in use") from err
            raise LocalKafkaError(f"cannot bind {HOST}:{port}: {err.strerror}") from err


def _choose_ports(port: int, brokers: int) -> list[tuple[int, int]]:
    if port:
        wanted = list(range(port, port + 2 * brokers))
        if wanted[-1] > 65535:
            raise LocalKafkaError(f"ports {port}..{wanted[-1]} run past 65535")
        for p in wanted:
            _check_free(p)
    else:
        # Hold every socket until all are picked so no two nodes get the same port.
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket()) for _ in range(2 * brokers)]
            for sock in socks:
                sock.bind((HOST, 0))
            wanted = [sock.getsockname()[1] for sock in socks]
    return [(wanted[i], wanted[brokers + i]) for i in range(brokers)]


def _format(java: str, libs: Path, state: _State, progress: Callable[[str], None]) -> None:
    progress(f"formatting the storage of {len(state.nodes)} node(s)")
    procs = []
    for node in state.nodes:  # in parallel: each is a JVM start
        jvm = jvm_command(java, libs, node.log_file, "256m")
        cmd = [*jvm, *FORMAT.split(), "-t", state.cluster_id, "-c", str(node.properties)]
        procs.append(Popen(cmd, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, text=True))
    for node, proc in zip(state.nodes, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            last = (out.strip().splitlines() or ["no output"])[-1]
            raise LocalKafkaError(f"formatting node {node.node_id} failed: {last}")


def _terminate(nodes: list[NodeInfo], timeout: float, *, kill: bool = False) -> None:
    steps = [(signal.SIGTERM, timeout)] if not kill else []
    for sig, wait in [*steps, (signal.SIGKILL, 10.0)]:
        nodes = [n for n in nodes if _alive(n)]
        for node in nodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, sig)
        deadline = time.monotonic() + wait
        while any(_alive(n) for n in nodes) and time.monotonic() < deadline:
            time.sleep(0.1)


def _launch(
    java: str,
    libs: Path,
    data_dir: Path,
    state: _State,
    ids: list[int],
    timeout: float,
    progress: Callable[[str], None],
) -> None:
    """Start nodes ids, record their pids, and wait until each serves metadata listing them."""
    deadline = time.monotonic() + timeout
    offsets: dict[int, int] = {}
    try:
        for i, node in enumerate(state.nodes):
            if node.node_id not in ids:
                continue
            offsets[node.node_id] = node.log_file.stat().st_size if node.log_file.exists() else 0
            progress(f"starting node {node.node_id} on {HOST}:{node.port}")
            jvm = jvm_command(java, libs, node.log_file, state.heap)
            cmd = [*jvm, MAIN_CLASS, str(node.properties)]
            with node.log_file.open("ab") as out:  # new session: outlives `segue kafka start`
                proc = Popen(cmd, stdin=DEVNULL, stdout=out, stderr=STDOUT, start_new_session=True)
            _children[proc.pid] = proc
            state.nodes[i] = replace(node, pid=proc.pid)
        _save(data_dir, state)  # before waiting, so stop() finds them if we are interrupted
        pending = [n for n in state.nodes if n.node_id in ids]
        while pending:
            for node in list(pending):
                if not _alive(node):
                    why = last_line(node.log_file, offsets[node.node_id])
                    raise LocalKafkaError(f"Kafka node {node.node_id} exited during start: {why}")
                left = deadline - time.monotonic()
                if left <= 0:
                    why = last_line(node.log_file, offsets[node.node_id])
                    raise LocalKafkaError(
                        f"Kafka node {node.node_id} not ready after {timeout:g} s: {why}"
                    )
                seen = broker_ids(node.port, min(left, 2.0))
                if seen is not None and set(ids) <= seen:
                    pending.remove(node)
            if pending:
                time.sleep(0.25)
    except BaseException:
        started = [n for n in state.nodes if n.node_id in ids]
        _terminate(started, 5.0)
        state.nodes = [replace(n, pid=0) if n.node_id in ids else n for n in state.nodes]
        _save(data_dir, state)
        raise


def _info(data_dir: Path, state: _State) -> ClusterInfo:
    nodes = tuple(n if _alive(n) else replace(n, pid=0) for n in state.nodes)
    return ClusterInfo(_bootstrap(nodes), data_dir, nodes)


def start(
    data_dir: Path,
    *,
    cache_dir: Path,
    port: int = 0,
    brokers: int = 1,
    timeout: float = 60.0,
    heap: str = "1g",
    progress: Callable[[str], None] = no_progress,
) -> ClusterInfo:
    """Start the cluster of data_dir, creating and formatting it on first use."""
    java = require("java")
    if brokers < 1:
        raise LocalKafkaError(f"brokers must be at least 1, not {brokers}")
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        state = _load(data_dir)
        if state is not None:
            if any(_alive(n) for n in state.nodes):
                raise LocalKafkaError(
                    f"a local Kafka is already running on {_bootstrap(state.nodes)} "
                    f"(data dir {data_dir})"
                )
            recorded = state.nodes[0].port
            if len(state.nodes) != brokers or port not in (0, recorded):
                raise LocalKafkaError(
                    f"{data_dir} holds a {len(state.nodes)}-node cluster on port {recorded}; "
                    "start it with those settings or use another data dir"
                )
            for node in state.nodes:
                _check_free(node.port)
                _check_free(node.controller_port)
            libs = ensure_distribution(cache_dir, progress=progress)
            state.heap = heap
            write_configs(state.nodes)
        else:
            ports = _choose_ports(port, brokers)
            libs = ensure_distribution(cache_dir, progress=progress)
            cluster_id = ""
            while not cluster_id or cluster_id.startswith("-"):  # Kafka avoids a leading "-" too
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            nodes = [_node(data_dir, i + 1, p, c) for i, (p, c) in enumerate(ports)]
            state = _State(cluster_id, heap, nodes)
            try:
                write_configs(state.nodes)
                _format(java, libs, state, progress)
            except BaseException:
                for node in nodes:  # only dirs this call created: no cluster.json existed
                    shutil.rmtree(node.data_dir, ignore_errors=True)
                raise
        _launch(java, libs, data_dir, state, [n.node_id for n in state.nodes], timeout, progress)
        return _info(data_dir, state)


def stop(data_dir: Path, *, timeout: float = 30.0) -> bool:
    """Stop every running node of data_dir; False when none was running."""
    data_dir = data_dir.resolve()
    if _load(data_dir) is None:
        return False
    with _locked(data_dir):
        state = _load(data_dir)
        assert state is not None
        live = [n for n in state.nodes if _alive(n)]
        _terminate(live, timeout)
        state.nodes = [replace(n, pid=0) for n in state.nodes]
        _save(data_dir, state)
        return bool(live)


def _recorded(data_dir: Path, node_id: int) -> tuple[_State, int]:
    state = _load(data_dir)
    if state is None:
        raise LocalKafkaError(f"no local Kafka is recorded in {data_dir}")
    for i, node in enumerate(state.nodes):
        if node.node_id == node_id:
            return state, i
    raise LocalKafkaError(f"the cluster in {data_dir} has no node {node_id}")


def stop_node(data_dir: Path, node_id: int, *, kill: bool = False, timeout: float = 30.0) -> bool:
    """Stop one node (SIGKILL at once when kill); False when it was not running."""
    data_dir = data_dir.resolve()
    with _locked(data_dir):
        state, i = _recorded(data_dir, node_id)
        node = state.nodes[i]
        was_running = _alive(node)
        _terminate([node] if was_running else [], timeout, kill=kill)
        state.nodes[i] = replace(node, pid=0)
        _save(data_dir, state)
        return was_running


def start_node(
    data_dir: Path,
    node_id: int,
    *,
    cache_dir: Path,
    timeout: float = 60.0,
    progress: Callable[[str], None] = no_progress,
) -> NodeInfo:
    """Restart one stopped node of a recorded cluster; returns once it serves metadata."""
    java = require("java")
    data_dir = data_dir.resolve()
    with _locked(data_dir):
        state, i = _recorded(data_dir, node_id)
        node = state.nodes[i]
        if _alive(node):
            raise LocalKafkaError(f"Kafka node {node_id} is already running (pid {node.pid})")
        _check_free(node.port)
        _check_free(node.controller_port)
        libs = ensure_distribution(cache_dir, progress=progress)
        write_configs(state.nodes)
        _launch(java, libs, data_dir, state, [node_id], timeout, progress)
        return state.nodes[i]


def status(data_dir: Path) -> ClusterInfo | None:
    """The recorded cluster with pid 0 for nodes not running; None if nothing is recorded."""
    data_dir = data_dir.resolve()
    state = _load(data_dir)
    return None if state is None else _info(data_dir, state)
