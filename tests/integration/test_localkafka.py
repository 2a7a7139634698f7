"""engine.localkafka against real Apache Kafka JVMs on 127.0.0.1 (no mocks).

The first run fetches the jars with mvn into SEGUE_CACHE_DIR (default ~/.cache/segue).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import engine.localkafka as localkafka
from engine.localkafka import LocalKafkaError

pytestmark = pytest.mark.integration

CACHE_DIR = Path(os.environ.get("SEGUE_CACHE_DIR") or Path.home() / ".cache" / "segue")
Record = tuple[bytes | None, bytes | None]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "kafka"
    yield path
    localkafka.stop(path, timeout=10)  # whatever a failed test left running


def _gone(pid: int) -> bool:
    """The process has exited; a zombie nobody reaped counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def _create_topic(bootstrap: str, topic: str, replication: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=replication)]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, group: str, count: int) -> list[Record]:
    """The first count records of topic, read by a fresh consumer group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[Record] = []
        async with asyncio.timeout(30):
            while len(records) < count:
                record = await consumer.getone()
                records.append((record.key, record.value))
        await consumer.commit()
        return records
    finally:
        await consumer.stop()


def test_taken_port_is_named(data_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LocalKafkaError, match=rf"^port 127\.0\.0\.1:{port} is already in use$"):
            localkafka.start(data_dir, cache_dir=CACHE_DIR, port=port)
    assert localkafka.status(data_dir) is None


def test_missing_java_is_one_line(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LocalKafkaError) as err:
        localkafka.start(data_dir, cache_dir=CACHE_DIR)
    message = str(err.value)
    assert "java" in message and "\n" not in message
    assert localkafka.status(data_dir) is None


async def test_start_roundtrip_stop_restart(data_dir: Path) -> None:
    info = localkafka.start(data_dir, cache_dir=CACHE_DIR)
    (node,) = info.nodes
    assert info.running and info.bootstrap == f"127.0.0.1:{node.port}"
    assert (data_dir / "cluster.json").is_file() and node.log_file.stat().st_size > 0
    with pytest.raises(LocalKafkaError, match=f"already running on {info.bootstrap}"):
        localkafka.start(data_dir, cache_dir=CACHE_DIR)

    await _create_topic(info.bootstrap, "cx.test")
    await _produce(info.bootstrap, "cx.test", b"customer-1", b"before-restart")
    assert await _read(info.bootstrap, "cx.test", "g1", 1) == [(b"customer-1", b"before-restart")]

    assert localkafka.stop(data_dir) is True
    assert _gone(node.pid)
    stopped = localkafka.status(data_dir)
    assert stopped is not None and not stopped.running and stopped.nodes[0].pid == 0
    assert localkafka.stop(data_dir) is False

    again = localkafka.start(data_dir, cache_dir=CACHE_DIR)
    assert again.bootstrap == info.bootstrap  # the recorded ports, so the storage stays valid
    assert await _read(again.bootstrap, "cx.test", "g2", 1) == [(b"customer-1", b"before-restart")]
    assert localkafka.stop(data_dir) is True


@pytest.mark.slow
async def test_three_nodes_survive_one_killed(data_dir: Path) -> None:
    info = localkafka.start(data_dir, cache_dir=CACHE_DIR, brokers=3)
    assert len(info.nodes) == 3 and len(info.bootstrap.split(",")) == 3
    assert len({p for n in info.nodes for p in (n.port, n.controller_port)}) == 6
    await _create_topic(info.bootstrap, "cx.replicated", replication=3)
    await _produce(info.bootstrap, "cx.replicated", b"k", b"one")

    victim = info.nodes[1]
    assert localkafka.stop_node(data_dir, victim.node_id, kill=True) is True
    assert _gone(victim.pid)
    status = localkafka.status(data_dir)
    assert status is not None and [n.pid == 0 for n in status.nodes] == [False, True, False]
    await _produce(info.bootstrap, "cx.replicated", b"k", b"two")

    back = localkafka.start_node(data_dir, victim.node_id, cache_dir=CACHE_DIR)
    assert back.running and back.port == victim.port
    records = await _read(info.bootstrap, "cx.replicated", "g3", 2)
    assert [value for _, value in records] == [b"one", b"two"]
    assert localkafka.stop(data_dir) is True
