"""One node of the local Kafka (engine/kafka_node.py) without a broker: its
server.properties, the Metadata probe against a stand-in server speaking Kafka's framing,
and the reason picked from a failed node's log. tests/integration/test_localkafka.py
runs them against real nodes."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

from engine.kafka_node import NodeInfo, broker_ids, last_line, server_properties, write_configs


def _nodes(tmp_path: Path, n: int) -> list[NodeInfo]:
    return [
        NodeInfo(i, 9000 + i, 9100 + i, 0, tmp_path / f"node-{i}", tmp_path / f"node-{i}.log")
        for i in range(1, n + 1)
    ]


def _props(text: str) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    return dict(pairs)


def test_three_nodes_form_one_quorum_with_replicated_internal_topics(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path, 3)
    props = _props(server_properties(nodes, nodes[1]))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path / "node-2" / "data")


def test_one_node_replicates_nothing_and_each_node_gets_its_file(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path, 1)
    props = _props(server_properties(nodes, nodes[0]))
    assert props["default.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    two = _nodes(tmp_path, 2)
    write_configs(two)
    for node in two:
        assert (node.data_dir / "data").is_dir()
        assert _props(node.properties.read_text())["node.id"] == str(node.node_id)


def _metadata_v4(brokers: list[tuple[int, str, int, str | None]]) -> bytes:
    body = struct.pack(">iii", 1, 0, len(brokers))
    for node_id, host, port, rack in brokers:
        body += struct.pack(">ih", node_id, len(host)) + host.encode() + struct.pack(">i", port)
        body += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    return body + b"\x00\x00\x00\x00"  # the rest (cluster id, controller, topics) is not read


def _serve_once(reply: bytes) -> tuple[int, list[bytes]]:
    """A server that reads one framed request and answers it with ``reply``."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def run() -> None:
        with server, server.accept()[0] as conn:
            (size,) = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))
            got.append(conn.recv(size, socket.MSG_WAITALL))
            conn.sendall(struct.pack(">i", len(reply)) + reply)

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1], got


def test_the_probe_sends_metadata_v4_and_reads_every_broker_listed() -> None:
    reply = _metadata_v4([(1, "127.0.0.1", 9001, None), (3, "localhost", 9003, "rack-a")])
    port, got = _serve_once(reply)
    assert broker_ids(port, 5.0) == {1, 3}
    api_key, version = struct.unpack_from(">hh", got[0])
    assert (api_key, version) == (3, 4)


def test_the_probe_answers_none_for_no_server_or_a_cut_reply() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        closed = taken.getsockname()[1]
    assert broker_ids(closed, 1.0) is None
    port, _ = _serve_once(struct.pack(">iii", 1, 0, 2))  # says two brokers, lists none
    assert broker_ids(port, 5.0) is None


def test_the_reason_is_the_last_error_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    earlier = "[2026-11-26 10:00:00,000] ERROR an old failure (kafka.Kafka)\n"
    log.write_text(
        earlier
        + "[2026-11-26 10:01:00,000] INFO starting (kafka.Kafka)\n"
        + "[2026-11-26 10:01:01,000] ERROR Exiting Kafka due to fatal exception (kafka.Kafka)\n"
        + "java.lang.RuntimeException: bad config\n"
        + "\tat kafka.Kafka.main(Kafka.scala:1)\n"
        + "Error: A fatal exception has occurred. Program will exit.\n"
    )
    why = last_line(log, len(earlier))
    assert why == f"java.lang.RuntimeException: bad config (log: {log})"
    assert last_line(tmp_path / "none.log", 0) == f"no log at {tmp_path / 'none.log'}"
