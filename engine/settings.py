"""Segue's one settings object.

Each field reads the environment variable ``SEGUE_<FIELD NAME IN CAPITALS>``. The
``doc`` of each field below is the reference documentation: ``segue config`` prints it
next to the effective value, and the README's table is generated from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "SEGUE_"


class SettingsError(ValueError):
    """An environment variable has a value its setting cannot take."""


def _opt(default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = _opt(
        "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_sasl_username: str = _opt("", "SASL/PLAIN user name; empty means a PLAINTEXT connection.")
    kafka_sasl_password: str = _opt("", "SASL/PLAIN password.", secret=True)
    topic_prefix: str = _opt("cx.", "Prefix of every topic name (cx.web, cx.decisions.log, ...).")
    app_id: str = _opt("segue", "Consumer group id and prefix of the worker's changelog topics.")
    data_dir: Path = _opt(
        Path("var"), "Local state: the worker's table stores and the local Kafka's data."
    )
    cache_dir: Path = _opt(
        Path.home() / ".cache" / "segue",
        "Downloads kept between runs (the Apache Kafka jars fetched by Maven).",
    )
    partitions: int = _opt(
        3, "Partitions of every customer-keyed topic; all must match for co-partitioning."
    )
    replication_factor: int = _opt(1, "Replication factor of the topics Segue creates.")
    table_store: str = _opt(
        "rocksdb://",
        "Faust table store URL: rocksdb:// (kept on disk in data_dir, so a restart "
        "only reads the changelog written since) or memory:// (rebuilt from the whole "
        "changelog at every start; for tests and small deployments).",
    )
    web_host: str = _opt("127.0.0.1", "Address the worker's web server (/metrics) binds.")
    web_port: int = _opt(6066, "Port of the worker's web server.")
    session_timeout_seconds: float = _opt(
        10.0,
        "How long the group waits for a silent worker before moving its partitions to "
        "the others: the pause a crashed worker's customers see.",
    )
    fetch_max_wait_ms: int = _opt(
        25,
        "Longest a worker's fetch waits at the broker for data: an upper bound on the "
        "latency it adds to an event (Faust's fixed 1,500 ms is overridden, see "
        "engine/transport.py); lower means more empty fetches when idle.",
    )
    fetch_min_bytes: int = _opt(
        1,
        "Least data a worker's fetch waits for at the broker, up to the fetch wait, "
        "before it is answered; the floor of the size set from the input rate "
        "(SEGUE_FETCH_GATHER_MS), or the size itself when that is 0.",
    )
    fetch_gather_ms: int = _opt(
        20,
        "Input a worker's fetch waits to gather, in milliseconds of the rate measured: "
        "every second the fetch size is set to this share of the bytes fetched in it "
        "(keys and values, uncompressed), from SEGUE_FETCH_MIN_BYTES up to 1 MiB "
        "(engine/fetchsize.py). Each fetch costs the worker CPU whatever it holds; at "
        "1,000 events/s 20 took 40% of a core at p50 16 ms, 10 took 52% at p50 10 ms, "
        "5 took 68% (benchmarks/README.md). Adds up to this much latency, never more "
        "than the fetch wait; 0 keeps the size at SEGUE_FETCH_MIN_BYTES.",
    )
    log_level: str = _opt("info", "Worker log level: debug, info, warning or error.")
    max_event_bytes: int = _opt(
        1_048_576, "Largest accepted event value in bytes; larger ones are dead-lettered."
    )
    max_future_skew_seconds: int = _opt(
        300, "How far ahead of the worker's clock an event time may be before rejection."
    )
    dedup_window_seconds: int = _opt(
        86_400, "An event whose (source, id) was applied this recently is a duplicate."
    )
    dedup_max_ids: int = _opt(
        32,
        "Event ids remembered per customer for deduplication; beyond it the oldest go "
        "first, which bounds the state each customer costs.",
    )
    exploration_rate: float = _opt(
        0.05,
        "Share of decisions that explore a random eligible action (epsilon-greedy). At "
        "0.05 the lift benchmark's learned policy won 0.85 of the oracle's lift over 100k "
        "decisions, at 0.1 0.81 (benchmarks/README.md).",
    )
    learning_rate: float = _opt(
        0.1, "AdaGrad step size of the next-best-action model's heads (models/uplift.py)."
    )
    attribution_window_seconds: int = _opt(
        259_200,
        "How long after a decision its outcome or a purchase still counts for it (3 days). "
        "A click or conversion within it teaches reward 1, and so does an order the "
        "customer places within it after their latest marketing decision (its amount is "
        "that decision's revenue); a decision still open when it has passed, seen at the "
        "customer's next record, teaches reward 0.",
    )
    min_score: float = _opt(
        0.0, "Stay quiet when the best eligible action scores below this propensity."
    )
    holdout_share: float = _opt(
        0.05,
        "Share of customers, by a stable hash of their id, in the holdout group: they get "
        "no marketing action from journeys or next-best-action (service and transactional "
        "ones still go out), so treated customers' conversion and revenue can be compared "
        "with theirs. 0 turns the holdout off.",
    )
    holdout_salt: str = _opt(
        "segue",
        "Mixed into the holdout hash: a new salt draws a new holdout group (a new "
        "experiment); the same salt keeps every customer in their group across restarts.",
    )
    journeys_file: str = _opt(
        "",
        "Journey catalogue (YAML) a worker uses until one is published on the control "
        "topic; empty: the built-in default catalogue.",
    )
    profile_cache_size: int = _opt(
        5_000,
        "Decoded customer profiles a worker keeps in memory, the most recently used: "
        "their next event skips decoding the stored bytes (about 20 us of a 400 us "
        "decision point). About 4-10 KB and some 50 objects each, which every full "
        "garbage collection walks: 20,000 made pauses of 80-155 ms "
        "(segue_gc_pause_seconds). 0 turns the cache off.",
    )
    profile_write_delay_ms: int = _opt(
        5_000,
        "How long a changed profile stays in the cache before it is written to the profile "
        "table (RocksDB and its changelog): what changes meanwhile goes out as one write "
        "(engine/profile_cache.py). Commits hold back to the first record whose change "
        "is unwritten, so a crash replays up to this much more input. Kafka Streams' "
        "record cache holds changes for its 30 s commit interval. 0 writes each change "
        "at once; so does SEGUE_PROFILE_CACHE_SIZE=0.",
    )
    timer_tick_seconds: float = _opt(
        1.0,
        "How often a worker looks for due journey timers: about the most a timer fires "
        "late on a healthy worker.",
    )
    model_snapshot_seconds: float = _opt(
        30.0,
        "How often a worker publishes its model to the model topic when it learned since "
        "the last snapshot (and once more on a clean shutdown): the most learning a "
        "crashed worker loses.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is None:
                continue
            values[f.name] = _convert(f.name, raw, type(f.default))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.partitions < 1:
            raise SettingsError(f"{env_name('partitions')} must be at least 1")
        if self.replication_factor < 1:
            raise SettingsError(f"{env_name('replication_factor')} must be at least 1")
        if not 0.0 <= self.holdout_share < 1.0:
            raise SettingsError(f"{env_name('holdout_share')} must be from 0 up to (not) 1")
        if not 0.0 <= self.exploration_rate <= 1.0:
            raise SettingsError(f"{env_name('exploration_rate')} must be between 0 and 1")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise SettingsError(f"{env_name('log_level')} must be debug, info, warning or error")
        if not 0 <= self.fetch_max_wait_ms <= 10_000:
            raise SettingsError(f"{env_name('fetch_max_wait_ms')} must be 0 to 10000")
        if not 1 <= self.fetch_min_bytes <= 52_428_800:
            raise SettingsError(f"{env_name('fetch_min_bytes')} must be 1 to 52428800")
        if not 0 <= self.fetch_gather_ms <= 10_000:
            raise SettingsError(f"{env_name('fetch_gather_ms')} must be 0 to 10000")
        if self.attribution_window_seconds < 1:
            raise SettingsError(f"{env_name('attribution_window_seconds')} must be at least 1")
        if self.profile_cache_size < 0:
            raise SettingsError(f"{env_name('profile_cache_size')} must be 0 or more")
        if not 0 <= self.profile_write_delay_ms <= 60_000:
            raise SettingsError(f"{env_name('profile_write_delay_ms')} must be 0 to 60000")
        if self.timer_tick_seconds <= 0:
            raise SettingsError(f"{env_name('timer_tick_seconds')} must be above 0")
        if self.model_snapshot_seconds <= 0:
            raise SettingsError(f"{env_name('model_snapshot_seconds')} must be above 0")
        if not self.table_store.startswith(("memory://", "rocksdb://")):
            raise SettingsError(f"{env_name('table_store')} must be memory:// or rocksdb://")

    def to_env(self) -> dict[str, str]:
        """These settings as ``SEGUE_*`` variables, for a child process (a worker)."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in fields(self)}

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(variable, effective value, default, doc) per setting, secrets masked."""
        rows = []
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if f.metadata["secret"]:
                value = "****" if value else ""
            rows.append((env_name(f.name), str(value), str(default), f.metadata["doc"]))
        return rows


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _convert(name: str, raw: str, kind: type[Any]) -> Any:
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if issubclass(kind, Path):
            return Path(raw).expanduser()
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}") from None
