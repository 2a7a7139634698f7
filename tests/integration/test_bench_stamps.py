"""The bench's latency to an output produced: the broker's stamp of its append, on the
real broker (benchmarks/loadgen.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import engine.localkafka as localkafka
from benchmarks.loadgen import LOG_APPEND_TIME, stamp_on_append

pytestmark = pytest.mark.integration

AN_HOUR_AGO_MS = int(time.time() * 1000) - 3_600_000


async def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {e[0]: e[1] for e in described[0].resources[0][4]}
    finally:
        await admin.close()


async def _round_trip(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """Send one record stamped an hour ago; its timestamp type and timestamp as read back,
    and the time it was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent_ms = int(time.time() * 1000)
        await producer.send_and_wait(topic, b"v", key=b"k", timestamp_ms=AN_HOUR_AGO_MS)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        rec = await asyncio.wait_for(consumer.getone(), 30)
        return rec.timestamp_type, rec.timestamp, sent_ms
    finally:
        await consumer.stop()


def test_outputs_are_stamped_on_append_and_the_topics_own_settings_kept(
    kafka: localkafka.ClusterInfo,
) -> None:
    topic = "bench-stamps.out"

    async def scenario() -> tuple[dict[str, str], tuple[int, int, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            configs = {"cleanup.policy": "delete", "segment.ms": "600000"}
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
        finally:
            await admin.close()
        await stamp_on_append(kafka.bootstrap, topic)
        return await _configs(kafka.bootstrap, topic), await _round_trip(kafka.bootstrap, topic)

    configs, (kind, stamp, sent_ms) = asyncio.run(scenario())
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert configs["segment.ms"] == "600000"  # AlterConfigs replaced the set, kept it
    assert kind == LOG_APPEND_TIME
    # The broker's clock at the append, not the hour-old stamp the producer sent.
    assert stamp >= sent_ms - 1000
