"""Topic administration: create the catalogue idempotently, check it before a worker starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from engine.settings import Settings
from topics.catalogue import TopicSpec, topic_catalogue


class AdminError(Exception):
    """One-line reason a topic operation cannot go on."""


@dataclass(frozen=True, slots=True)
class TopicState:
    spec: TopicSpec
    partitions: int | None
    """Partitions the topic has on the cluster; None when it does not exist."""


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """How every Segue client (admin, producer, consumer) connects: SASL/PLAIN when a
    user is set, and a 15 s request timeout so a broker that does not answer fails soon."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "request_timeout_ms": 15_000,
    }
    if settings.kafka_sasl_username:
        kwargs.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return kwargs


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_kwargs(settings))


async def start_client(client: Any, settings: Settings) -> None:
    """Start an aiokafka client, or raise AdminError with one line if Kafka is not there."""
    # aiokafka logs every failed connection attempt itself; the AdminError says it once.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        await client.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        # Close what the failed start opened, else aiokafka warns of an unclosed client.
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        raise AdminError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    finally:
        client_log.setLevel(level)


async def describe(settings: Settings) -> list[TopicState]:
    """The catalogue's topics as they are on the cluster."""
    admin = admin_client(settings)
    await start_client(admin, settings)
    try:
        specs = topic_catalogue(settings.topic_prefix)
        existing = set(await admin.list_topics())
        present = [s.name for s in specs if s.name in existing]
        counts: dict[str, int] = {}
        if present:
            for meta in await admin.describe_topics(present):
                counts[meta["topic"]] = len(meta["partitions"])
        return [TopicState(s, counts.get(s.name)) for s in specs]
    finally:
        await admin.close()


async def create_topics(
    settings: Settings, *, report: Callable[[str], None] = print
) -> list[TopicState]:
    """Create whatever the catalogue lacks; never touches a topic that exists.

    A topic that exists with a different partition count is reported, not changed:
    changing it would move customers between partitions and split their state.
    """
    states = await describe(settings)
    missing = [s.spec for s in states if s.partitions is None]
    for st in states:
        if st.partitions is not None and st.partitions != settings.partitions:
            report(
                f"warning: {st.spec.name} has {st.partitions} partitions, "
                f"SEGUE_PARTITIONS is {settings.partitions}"
            )
    if missing:
        admin = admin_client(settings)
        await start_client(admin, settings)
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        settings.partitions,
                        settings.replication_factor,
                        topic_configs=spec.configs(),
                    )
                    for spec in missing
                ]
            )
        except KafkaError as exc:
            raise AdminError(f"creating topics failed: {exc}") from None
        finally:
            await admin.close()
    for spec in missing:
        report(f"created {spec.name} ({'compacted' if spec.compacted else 'delete'})")
    if not missing:
        report(f"all {len(states)} topics exist")
    return await describe(settings)


async def check_inputs(settings: Settings) -> None:
    """Fail before the worker starts if its topics are missing or not co-partitioned."""
    states = await describe(settings)
    missing = [s.spec.name for s in states if s.partitions is None]
    if missing:
        raise AdminError(f"topics missing: {', '.join(missing)}; run `segue topics create` first")
    wrong = [
        f"{s.spec.name} ({s.partitions})"
        for s in states
        if s.spec.keyed_by_customer and s.partitions != settings.partitions
    ]
    if wrong:
        raise AdminError(
            f"customer-keyed topics must all have SEGUE_PARTITIONS={settings.partitions} "
            f"partitions: {', '.join(wrong)}"
        )
