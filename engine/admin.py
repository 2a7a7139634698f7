"""Topic administration: create the catalogue idempotently, check it before a worker starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

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


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    kwargs: dict[str, object] = {}
    if settings.kafka_sasl_username:
        kwargs.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15_000, **kwargs
    )


async def describe(settings: Settings) -> list[TopicState]:
    """The catalogue's topics as they are on the cluster."""
    admin = admin_client(settings)
    # aiokafka logs each failed connection attempt itself; the AdminError below already
    # says it in one line, so keep its logger quiet while connecting.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise AdminError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    finally:
        client_log.setLevel(level)
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
        await admin.start()
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
