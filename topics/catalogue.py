"""The topic catalogue of DESIGN.md, built from one configurable prefix.

Every topic between the inputs and the outputs is keyed by ``customer_id`` and has the
same partition count, so one customer's events, state and decisions share a partition
number and are processed in order by one worker.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUT_SOURCES: tuple[str, ...] = ("web", "support", "purchase", "outcome", "consent")
"""Input topics, one per kind of upstream producer."""

CHANNELS: tuple[str, ...] = ("email", "sms", "push", "inapp", "agent")
"""Delivery channels; each has its own decision topic. ``agent`` is for people (sales, service)."""


INPUT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""Largest record an input topic takes. Above the engine's own event limit on purpose: an
oversized event is better dead-lettered where its owner can see it than refused to a
producer that may just log and drop it."""

DLQ_MAX_MESSAGE_BYTES = INPUT_MAX_MESSAGE_BYTES + 64 * 1024
"""Room for any input record plus the reason headers a dead letter adds."""

MODEL_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""Largest model snapshot: 500 times the default policy's (about 4 KB with 8 arms), and
within the worker producer's request limit (DLQ_MAX_MESSAGE_BYTES)."""

MODEL_SEGMENT_MS = 3_600_000
"""Compaction never cleans the active segment, which Kafka rolls every 7 days by
default: at a snapshot every 30 s per worker that is 20,000 records a starting worker
reads. Rolling hourly bounds it to about 120 per worker."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool
    purpose: str
    keyed_by_customer: bool = True
    max_message_bytes: int | None = None
    """Per-topic ``max.message.bytes``; None keeps the broker's default (1 MiB)."""
    segment_ms: int | None = None
    """Per-topic ``segment.ms``; None keeps the broker's default (7 days)."""

    def configs(self) -> dict[str, str]:
        """Topic-level configs ``segue topics create`` sets."""
        out = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.max_message_bytes is not None:
            out["max.message.bytes"] = str(self.max_message_bytes)
        if self.segment_ms is not None:
            out["segment.ms"] = str(self.segment_ms)
        return out


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Resolved topic names for one prefix (default ``cx.``)."""

    prefix: str

    def source(self, source: str) -> str:
        return f"{self.prefix}{source}"

    def decisions(self, channel: str) -> str:
        return f"{self.prefix}decisions.{channel}"

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.source(s) for s in INPUT_SOURCES)

    @property
    def decision_log(self) -> str:
        return f"{self.prefix}decisions.log"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def control(self) -> str:
        return f"{self.prefix}control.journeys"

    @property
    def model_snapshots(self) -> str:
        return f"{self.prefix}model.snapshots"

    def source_of(self, topic: str) -> str | None:
        """Map an input topic name back to its source (``cx.web`` -> ``web``)."""
        if not topic.startswith(self.prefix):
            return None
        rest = topic[len(self.prefix) :]
        return rest if rest in INPUT_SOURCES else None


def topic_catalogue(prefix: str) -> list[TopicSpec]:
    """Every topic Segue owns, in the order ``segue topics create`` makes them."""
    names = TopicNames(prefix)
    specs = [
        TopicSpec(
            names.source(s),
            compacted=False,
            purpose=f"{s} events from upstream",
            max_message_bytes=INPUT_MAX_MESSAGE_BYTES,
        )
        for s in INPUT_SOURCES
    ]
    specs += [
        TopicSpec(names.decisions(c), compacted=False, purpose=f"decisions to deliver by {c}")
        for c in CHANNELS
    ]
    specs += [
        TopicSpec(names.decision_log, compacted=False, purpose="every decision, explained"),
        TopicSpec(
            names.dlq,
            compacted=False,
            purpose="rejected records with reason headers",
            max_message_bytes=DLQ_MAX_MESSAGE_BYTES,
        ),
        # These hold state (latest catalogue, latest model per key): compaction keeps the
        # newest value of each key forever instead of expiring it with retention.
        TopicSpec(
            names.control,
            compacted=True,
            purpose="journey catalogue versions",
            keyed_by_customer=False,
        ),
        TopicSpec(
            names.model_snapshots,
            compacted=True,
            purpose="learned model snapshots",
            keyed_by_customer=False,
            max_message_bytes=MODEL_MAX_MESSAGE_BYTES,
            segment_ms=MODEL_SEGMENT_MS,
        ),
    ]
    return specs
