"""The worker's producer keeps the metadata of the worker's own topics, not of every topic
on the cluster (engine/transport.py), and still sends to a topic it did not follow."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

from aiokafka.admin import NewTopic

import engine.localkafka as localkafka
from engine.admin import admin_client, create_topics
from engine.app import build_app
from engine.settings import Settings


def test_the_producer_follows_the_worker_topics_and_sends_to_any_other(
    kafka: localkafka.ClusterInfo, tmp_path: Path
) -> None:
    settings = replace(
        Settings.from_env({}),
        kafka_bootstrap=kafka.bootstrap,
        data_dir=tmp_path,
        topic_prefix=f"pm{uuid.uuid4().hex[:8]}.",
        app_id=f"pm{uuid.uuid4().hex[:8]}",
    )
    other = f"unrelated-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[frozenset[str], set[str], set[str], int]:
        await create_topics(settings, report=lambda line: None)
        admin = admin_client(settings)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(other, 1, 1)])
            for _ in range(100):  # until the broker's metadata has it
                if other in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{other} was not in the cluster's metadata after 10 s")
        finally:
            await admin.close()
        app = build_app(settings)
        producer = app.producer
        await producer.start()
        try:
            client = producer._ensure_producer().client
            # As Faust does after it declares each of its topics: without topics to
            # follow, aiokafka then takes in the metadata of every topic on the cluster.
            await client.force_metadata_update()
            followed = set(client.cluster.topics())
            sent = await (await producer.send(other, b"k", b"v", None, None, None))
            return app.owned_topics, followed, set(client.cluster.topics()), sent.offset
        finally:
            await producer.stop()

    names, followed, after_send, offset = asyncio.run(run())
    # Only the worker's topics that exist (the changelogs and internal hops do not until
    # a worker creates them), not the other topic that exists on the same cluster.
    assert f"{settings.topic_prefix}decisions.log" in followed
    assert f"{settings.topic_prefix}web" in followed
    assert followed <= names
    assert other not in followed
    # A topic outside those is still written to, and followed from its first send on.
    assert offset == 0
    assert other in after_send
