"""The dead-letter record format.

A rejected record is re-published unchanged (same key, value and headers) with these
headers appended, so whoever fixes the cause can re-drive it to its source topic::

    segue.error.class      stable, low-cardinality reason (``malformed_json``, ...)
    segue.error.message    human-readable detail
    segue.source.topic     where it was read
    segue.source.partition
    segue.source.offset
    segue.rejected.at      epoch milliseconds (wall clock of the worker)

``segue dlq redrive`` re-publishes a dead letter to its source topic with the original
headers plus ``segue.redriven.from: <dlq topic>/<partition>/<offset>`` (one per round).
"""

from __future__ import annotations

from collections.abc import Sequence

Headers = list[tuple[str, bytes]]

ERROR_CLASS = "segue.error.class"
ERROR_MESSAGE = "segue.error.message"
SOURCE_TOPIC = "segue.source.topic"
SOURCE_PARTITION = "segue.source.partition"
SOURCE_OFFSET = "segue.source.offset"
REJECTED_AT = "segue.rejected.at"
REDRIVEN_FROM = "segue.redriven.from"

_OURS = (ERROR_CLASS, ERROR_MESSAGE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, REJECTED_AT)
MAX_MESSAGE_CHARS = 1000


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]],
    *,
    error_class: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    rejected_at_ms: int,
) -> Headers:
    """The original headers followed by the reason headers.

    Reason headers the record already carries (it was dead-lettered before and
    re-driven) are replaced, so a record never holds two conflicting reasons.

    >>> dead_letter_headers([("ce_id", b"1")], error_class="malformed_json", message="bad",
    ...                     topic="cx.web", partition=0, offset=7, rejected_at_ms=5)[:3]
    [('ce_id', b'1'), ('segue.error.class', b'malformed_json'), ('segue.error.message', b'bad')]
    """
    kept = [(k, v) for k, v in original if k not in _OURS]
    return [
        *kept,
        (ERROR_CLASS, error_class.encode()),
        (ERROR_MESSAGE, message[:MAX_MESSAGE_CHARS].encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (REJECTED_AT, str(rejected_at_ms).encode()),
    ]


def reason_of(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The reason headers of a dead-letter record, decoded."""
    return {k: v.decode("utf-8", "replace") for k, v in headers if k in _OURS}
