"""One node of the local Kafka: where it keeps its files, its server.properties, whether it
serves yet, and why it failed if it did.

engine/localkafka.py starts and stops the nodes; this module knows one node from the
outside: a Metadata request to its port tells whether it serves and which brokers it
lists (``broker_ids``), and its log says why it exited (``last_line``).
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    port: int
    controller_port: int
    pid: int  # 0 when the node is not running
    data_dir: Path  # <data_dir>/node-<id>
    log_file: Path

    @property
    def running(self) -> bool:
        return self.pid > 0

    @property
    def properties(self) -> Path:
        return self.data_dir / "server.properties"


def server_properties(nodes: list[NodeInfo], node: NodeInfo) -> str:
    """The server.properties of ``node``, one of ``nodes``: each a broker and a controller,
    the nodes together a static quorum."""
    rf = min(len(nodes), 3)
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.data_dir / "data",
        "num.partitions": 1,
        "auto.create.topics.enable": "false",  # Segue creates its topics explicitly
        "default.replication.factor": rf,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min(rf, 2),
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min(rf, 2),
        "group.initial.rebalance.delay.ms": 0,
        # Fewer threads than the defaults: three nodes may share two cores.
        "num.network.threads": 2,
        "num.io.threads": 4,
        # A killed node re-registers only once its old session expires (default 9 s);
        # shorter keeps fault tests that kill and restart a broker quick.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 500,
    }
    head = "# Written by engine/kafka_node.py on every start of the node; edits are overwritten.\n"
    return head + "".join(f"{key}={value}\n" for key, value in props.items())


def write_configs(nodes: list[NodeInfo]) -> None:
    """Each node's data dir and server.properties, written again on every start."""
    for node in nodes:
        (node.data_dir / "data").mkdir(parents=True, exist_ok=True)
        node.properties.write_text(server_properties(nodes, node))


def last_line(log: Path, offset: int) -> str:
    """The line of a node's log most likely to say why it failed, from offset on."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return f"no log at {log}"
    # Skip stack frames and the launcher's sign-off, which follows the real reason.
    noise = ("Error: Could not create the Java", "Error: A fatal exception has occurred")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln[0].isspace()]
    lines = [ln for ln in lines if not ln.startswith(noise)]
    errors = [ln for ln in lines if re.search(r"\b(ERROR|FATAL)\b|Exception|^Error", ln)]
    line = (errors or lines or ["nothing logged"])[-1]
    return re.sub(r"^\[[^\]]*\]\s*", "", line)[:300] + f" (log: {log})"


def _recv(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def broker_ids(port: int, timeout: float) -> set[int] | None:
    """Ids of the registered brokers a Metadata v4 request to port reports; None if no answer.

    A hand-made request keeps start() synchronous and usable from inside a running event loop;
    v4 is the oldest Metadata version Kafka 4 still serves and needs no flexible encoding.
    """
    client = b"segue-localkafka"
    header = struct.pack(">hhih", 3, 4, 1, len(client)) + client
    request = header + struct.pack(">ib", -1, 0)  # all topics (null array), no auto-create
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv(sock, 4))
            resp = _recv(sock, size)
        _, _, count = struct.unpack_from(">iii", resp, 0)  # correlation id, throttle, brokers
        pos, ids = 12, set()
        for _ in range(count):
            node_id, host_len = struct.unpack_from(">ih", resp, pos)
            (rack_len,) = struct.unpack_from(">h", resp, pos + 10 + host_len)
            pos += 12 + host_len + max(rack_len, 0)
            ids.add(node_id)
        return ids
    except (OSError, struct.error):
        return None
