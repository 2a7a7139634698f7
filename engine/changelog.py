"""The worker's changelog-backed tables, read and written by partition, their changelog
records sent through the outbox (engine/outbox.py) with the worker's output.

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

With RocksDB, step 1 is staged: the writes of a slice of records (engine/delivery.py)
wait in a dict, which reads look at first, and ``write_staged`` puts them into each
partition's database as one ``WriteBatch`` when the slice is done, before the handler
returns and before anything can await. A put of its own cost ~14 µs, one of a batch of
eight ~4.5 µs. Nothing but the slice's own records can read between the two, and a crash
before the batch loses nothing the changelog or the committed offsets hold: its records
are read again.

Reads and writes name the partition: the one of the record being processed, which every
table shares with the topics (co-partitioned). Faust's store methods take it from the
stream event in progress, and there is none here: the consumer hands records to the
worker directly (engine/delivery.py).
"""

from __future__ import annotations

from typing import Any, cast

from faust.types import TP
from rocksdict import WriteBatch

from engine.outbox import Outbox
from engine.records import Send


class ChangelogTable:
    """Access to one Faust ``Table`` of bytes keys and values (raw codecs), by partition."""

    def __init__(self, table: Any, outbox: Outbox) -> None:
        self.table = table
        self.outbox = outbox
        self.topic: str = table.changelog_topic.get_topic_name()
        self._rocksdb = hasattr(table.data, "_db_for_partition")
        self._staged: dict[int, dict[bytes, bytes | None]] = {}
        """RocksDB writes not yet in the database, by partition (None: a delete)."""
        outbox.on_delivered(self.topic, self._persisted)

    def get(self, key: bytes, partition: int) -> bytes | None:
        """The value of ``key`` in ``partition`` of the table, staged writes included."""
        staged = self._staged.get(partition)
        if staged is not None and key in staged:
            return staged[key]
        return cast("bytes | None", self._rows(partition).get(key))

    def set(self, key: bytes, value: bytes, partition: int) -> None:
        self._write(key, value, partition)
        self.outbox.add([Send(self.topic, key, value, [], partition)])

    def delete(self, key: bytes, partition: int) -> None:
        """Delete ``key`` (a tombstone on the changelog); nothing if it is absent."""
        if self.get(key, partition) is None:
            return
        self._write(key, None, partition)
        self.outbox.add([Send(self.topic, key, None, [], partition)])

    def write_staged(self) -> None:
        """Put the staged writes into RocksDB, one batch per partition."""
        for partition, staged in self._staged.items():
            batch = WriteBatch(raw_mode=True)
            for key, value in staged.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            self._rows(partition).write(batch)
        self._staged.clear()

    def _write(self, key: bytes, value: bytes | None, partition: int) -> None:
        if self._rocksdb:
            self._staged.setdefault(partition, {})[key] = value
        elif value is None:
            del self._rows(partition)[key]
        else:
            self._rows(partition)[key] = value

    def _rows(self, partition: int) -> Any:
        """The rows of ``partition``: its RocksDB (Faust opens it on first use, raw bytes
        in and out), or the memory store's one dict for all partitions."""
        store = self.table.data
        return store._db_for_partition(partition) if self._rocksdb else store.data

    def _persisted(self, partition: int, offset: int) -> None:
        self.table.data.set_persisted_offset(TP(self.topic, partition), offset)
