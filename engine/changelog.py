"""Writes to the worker's changelog-backed tables, their changelog records sent through
the outbox (engine/outbox.py) with the agents' output.

A Faust ``table[key] = value`` writes the local store and queues a changelog record in
Faust's producer buffer, which sends it as its own ``FutureMessage`` with a callback per
record that stores the record's offset (the table's *persisted offset*: where recovery
resumes reading the changelog). Per event that was ~8% of a deciding worker's time
(py-spy, issue 6). Here, as Faust does it, but a batch at a time:

1. the value goes to the table's local store (RocksDB, or memory) at once, so the next
   record of the partition reads it;
2. the changelog record (same key and value bytes, no headers, the partition of the
   record being processed: the table's partition) goes into the outbox, flushed before
   every commit like the output;
3. when the broker acknowledges a batch of it, the store's persisted offset for that
   changelog partition becomes the batch's last offset.

The records are Faust's own changelog format, so recovery, standbys and a plain Faust
table reading the changelog see nothing different.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

from engine.outbox import Outbox
from engine.records import Send


class ChangelogTable:
    """Write access to one Faust ``Table`` of bytes keys and values (raw codecs)."""

    def __init__(self, table: Any, outbox: Outbox) -> None:
        self.table = table
        self.outbox = outbox
        self.topic: str = table.changelog_topic.get_topic_name()
        outbox.on_delivered(self.topic, self._persisted)

    def set(self, key: bytes, value: bytes, partition: int, now: float) -> None:
        self.table.data[key] = value
        self.outbox.add([Send(self.topic, key, value, [], partition)], now)

    def delete(self, key: bytes, partition: int, now: float) -> None:
        """Delete ``key`` (a tombstone on the changelog); nothing if it is absent."""
        if key in self.table.data:
            del self.table.data[key]
            self.outbox.add([Send(self.topic, key, None, [], partition)], now)

    def _persisted(self, partition: int, offset: int) -> None:
        self.table.data.set_persisted_offset(TP(self.topic, partition), offset)
