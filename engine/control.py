"""The journey catalogue on the control topic: publish a new version, and follow it.

The control topic is compacted and has one key, ``catalogue``: its latest record is the
catalogue in force. Every worker reads the whole topic itself, outside the consumer
group (each worker needs every record, not a share of them):

1. Before the worker starts consuming (``segue worker``, engine/cli.py), ``latest``
   reads from the beginning to the end offsets of that moment: the worker starts with
   the latest valid catalogue, so no record is processed under one already replaced.
2. Then a task of the worker (``CatalogueFollower.follow``) reads the topic again from
   the beginning and keeps polling; each valid record switches the worker at once,
   between two records (the switch is one assignment on the event loop). Re-applying
   the catalogue already in force changes nothing.

A record holds the YAML text as written, so a worker checks it with the same loader as
``segue journeys validate`` and never runs a catalogue it would have refused. An
invalid record (published around the CLI) is logged and counted, and the worker keeps
the catalogue it has. Journeys running under an old version carry on where their step
still exists, and end with "withdrawn" where it does not (engine/journey_runtime.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.admin import connection_kwargs, start_client
from engine.compacted import CompactedReader
from engine.journey_loader import load_catalogue
from engine.journeys import Catalogue, CatalogueError, Problem
from engine.settings import Settings
from topics.catalogue import TopicNames

log = logging.getLogger("segue.control")

CATALOGUE_KEY = b"catalogue"


class PublishError(Exception):
    """One line on why a catalogue was not published."""


def encode_record(cat: Catalogue, source: str, filename: str, published_at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "catalogue": cat.name,
            "version": cat.version,
            "digest": cat.digest,
            "file": filename,
            "published_at_ms": published_at_ms,
            "source": source,
        }
    )


def decode_record(value: bytes | None) -> Catalogue:
    """The catalogue a control record carries; CatalogueError when it is not valid."""
    try:
        doc = orjson.loads(value or b"")
        source, filename = str(doc["source"]), str(doc.get("file", "<control>"))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        why = f"not a catalogue record (JSON with a 'source' field): {exc}"
        raise CatalogueError([Problem("<control>", 1, 1, why)]) from None
    return load_catalogue(source, filename=filename)


async def latest(settings: Settings) -> Catalogue | None:
    """The catalogue in force on the control topic, or None if none was published."""
    found: Catalogue | None = None

    def keep(cat: Catalogue) -> None:
        nonlocal found
        found = cat

    follower = CatalogueFollower(settings, keep)
    try:
        await follower.catch_up()
    finally:
        await follower.stop()
    return found


async def publish(settings: Settings, path: Path, *, now_ms: int) -> Catalogue:
    """Validate the file and publish it; its version must exceed the one in force."""
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read {path}: {exc}") from None
    cat = load_catalogue(source, filename=str(path))  # CatalogueError lists every problem
    current = await latest(settings)
    if current is not None and current.digest == cat.digest:
        raise PublishError(
            f"{cat.name}@{current.version} with this content is already in force; "
            "nothing to publish"
        )
    if current is not None and cat.version <= current.version:
        raise PublishError(
            f"version {cat.version} is not above the version in force "
            f"({current.name}@{current.version}): raise `version:` in {path}"
        )
    producer = AIOKafkaProducer(**connection_kwargs(settings), acks="all")
    await start_client(producer, settings)
    try:
        await producer.send_and_wait(
            TopicNames(settings.topic_prefix).control,
            key=CATALOGUE_KEY,
            value=encode_record(cat, source, path.name, now_ms),
            headers=[("content-type", b"application/json")],
        )
    finally:
        await producer.stop()
    return cat


class CatalogueFollower:
    """Reads the control topic from the start and calls ``apply`` with each valid
    catalogue, in order; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        apply: Callable[[Catalogue], None],
        *,
        rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = TopicNames(settings.topic_prefix).control
        self.apply = apply
        self.rejected = rejected or (lambda reason: None)
        self._reader = CompactedReader(settings, self.topic, self._take, what="control")

    async def catch_up(self) -> None:
        """Read to the end offsets of now."""
        await self._reader.catch_up()

    async def follow(self) -> None:
        """Catch up, then apply each new record as it comes, until cancelled."""
        while True:
            await self._reader.poll()

    async def stop(self) -> None:
        await self._reader.stop()

    def _take(self, rec: Any) -> None:
        if rec.key != CATALOGUE_KEY:
            return
        where = f"{rec.topic}/{rec.partition}@{rec.offset}"
        try:
            cat = decode_record(rec.value)
        except CatalogueError as err:
            log.error("ignoring invalid catalogue at %s: %s", where, err)
            self.rejected(str(err))
            return
        self.apply(cat)
