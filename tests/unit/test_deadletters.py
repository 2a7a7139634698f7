"""The dead-letter tools without a broker: parsing, filtering, time input, listings."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from engine.deadletters import (
    REDRIVEN_FROM,
    UNKNOWN,
    DeadLetter,
    Filter,
    format_table,
    parse_time,
    redrive,
    summarize,
)
from engine.settings import Settings
from topics.deadletter import dead_letter_headers

NOW = 1_800_000_000_000
ORIGINAL = [("ce_id", b"e-1"), ("trace", b"\x00\xff"), ("trace", b"second")]


def record(headers: list[tuple[str, bytes]], **fields: object) -> SimpleNamespace:
    """A consumer record as aiokafka hands it over, with only what a dead letter reads."""
    base = {"partition": 0, "offset": 0, "key": None, "value": b"", "timestamp": NOW}
    return SimpleNamespace(**{**base, **fields, "headers": headers})


def letter(
    *,
    error_class: str = "malformed_json",
    topic: str = "cx.web",
    at: int = NOW,
    key: bytes | None = b"c-1",
    value: bytes | None = b'{"bad',
    message: str = "unexpected end of input",
    offset: int = 0,
) -> DeadLetter:
    headers = dead_letter_headers(
        ORIGINAL,
        error_class=error_class,
        message=message,
        topic=topic,
        partition=2,
        offset=41,
        rejected_at_ms=at,
    )
    rec = record(headers, partition=1, offset=offset, key=key, value=value, timestamp=at + 5)
    return DeadLetter.parse(rec)


def test_parse_reads_the_reason_headers() -> None:
    d = letter()
    assert (d.partition, d.offset, d.key, d.value) == (1, 0, b"c-1", b'{"bad')
    assert (d.error_class, d.message) == ("malformed_json", "unexpected end of input")
    assert (d.source_topic, d.source_partition, d.source_offset) == ("cx.web", 2, 41)
    assert d.rejected_at_ms == NOW


def test_a_record_without_reason_headers_is_unknown_not_a_crash() -> None:
    d = DeadLetter.parse(record([("h", b"1")], offset=3))
    assert d.error_class == UNKNOWN and d.message == "" and d.source_topic == ""
    assert (d.source_partition, d.source_offset, d.rejected_at_ms) == (-1, -1, NOW)
    assert d.original_headers() == [("h", b"1")]


def test_garbled_numbers_in_reason_headers_fall_back() -> None:
    headers = [
        ("segue.error.class", b"too_large"),
        ("segue.source.offset", b"x"),
        ("segue.rejected.at", b"soon"),
    ]
    d = DeadLetter.parse(record(headers))
    assert (d.error_class, d.source_offset, d.rejected_at_ms) == ("too_large", -1, NOW)


def test_original_headers_are_exactly_what_the_record_arrived_with() -> None:
    # Built with the worker's own function: a reason header added there and not known
    # here would show up as an "original" header and fail this.
    assert letter().original_headers() == ORIGINAL


def test_original_headers_keep_the_redrive_history() -> None:
    history = [*ORIGINAL, (REDRIVEN_FROM, b"cx.dlq/0/7")]
    headers = dead_letter_headers(
        history,
        error_class="x",
        message="",
        topic="cx.web",
        partition=0,
        offset=1,
        rejected_at_ms=NOW,
    )
    assert DeadLetter.parse(record(headers)).original_headers() == history


def test_filter_matches_reason_source_and_a_half_open_window() -> None:
    d = letter(error_class="schema_invalid", topic="cx.support", at=NOW)
    assert Filter().matches(d)
    assert Filter(reasons=frozenset({"schema_invalid", "too_large"})).matches(d)
    assert not Filter(reasons=frozenset({"too_large"})).matches(d)
    assert Filter(source_topic="cx.support").matches(d)
    assert not Filter(source_topic="cx.web").matches(d)
    assert Filter(since_ms=NOW).matches(d)
    assert not Filter(since_ms=NOW + 1).matches(d)
    assert Filter(until_ms=NOW + 1).matches(d)
    assert not Filter(until_ms=NOW).matches(d)
    everything = Filter(frozenset({"schema_invalid"}), NOW - 10, NOW + 10, "cx.support")
    assert everything.matches(d)
    assert not replace(everything, source_topic="cx.web").matches(d)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T08:00:00Z", 1_795_507_200_000),
        ("2026-11-24T10:00:00+02:00", 1_795_507_200_000),
        ("2026-11-24T08:00:00.250Z", 1_795_507_200_250),
        (" 2026-11-24T08:00:00Z ", 1_795_507_200_000),
        ("1795507200000", 1_795_507_200_000),
        ("30s", NOW - 30_000),
        ("15m", NOW - 15 * 60_000),
        ("2h", NOW - 2 * 3_600_000),
        ("7d", NOW - 7 * 86_400_000),
        ("0m", NOW),
    ],
)
def test_parse_time_accepts_rfc3339_epoch_ms_and_ages(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not a time"),
        ("yesterday", "is not a time"),
        ("15x", "is not a time"),
        ("-5m", "is not a time"),
        ("1.5h", "is not a time"),
        ("2026-11-24T08:00:00", "no UTC offset"),
        ("1795507200", "epoch seconds"),
    ],
)
def test_parse_time_rejects_other_input_clearly(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_time(text, NOW)


def test_format_table_lists_every_letter_on_one_line() -> None:
    letters = [
        letter(),
        letter(error_class="tombstone", value=None, key=None, offset=1),
        letter(message="line one\nline two\ttab", key=b"\xff\xfec-9", offset=2),
    ]
    table = format_table(letters).splitlines()
    assert len(table) == 1 + len(letters)
    assert table[0].startswith("REJECTED AT (UTC)")
    assert "2027-01-15T08:00:00Z" in table[1] and "cx.web/2/41" in table[1]
    assert "<none>" in table[2]
    assert "line one\\nline two\\ttab" in table[3] and "\ufffd\ufffdc-9" in table[3]


def test_format_table_values_handle_tombstones_bytes_and_megabytes() -> None:
    huge = b'{"pad": "' + b"x" * 2_097_152 + b'"}'
    letters = [
        letter(value=None),
        letter(value=b"\xff\xfe\x00ok", offset=1),
        letter(value=huge, offset=2),
        letter(value="prix: 5 €".encode(), offset=3),
    ]
    table = format_table(letters, show_values=True).splitlines()
    values = [line for line in table if line.startswith("    value: ")]
    assert values[0] == "    value: <tombstone>"
    assert values[1] == "    value: \\xff\\xfe\\x00ok (5 bytes)"
    assert values[2].endswith("… (2,097,163 bytes)") and len(values[2]) < 200
    assert values[3] == "    value: prix: 5 € (11 bytes)"
    assert format_table(letters).count("value:") == 0


def test_format_table_survives_garbled_times_and_nothing_at_all() -> None:
    assert "100000000000000000000 ms" in format_table([letter(at=10**20)])
    assert format_table([]) == "no dead letters"


def test_summarize_counts_by_reason_and_source() -> None:
    letters = [
        letter(),
        letter(offset=1),
        letter(error_class="too_large", topic="cx.purchase", offset=2, at=NOW + 60_000),
    ]
    text = summarize(letters)
    assert text.splitlines()[0] == (
        "3 dead letters, rejected 2027-01-15T08:00:00Z .. 2027-01-15T08:01:00Z"
    )
    assert "  malformed_json  2" in text and "  too_large       1" in text
    assert "  cx.web       2" in text and "  cx.purchase  1" in text
    assert summarize([]) == "no dead letters"


async def test_a_dry_run_plans_without_connecting() -> None:
    # Nothing listens on port 9 of the loopback: a connection attempt would fail.
    settings = replace(Settings.from_env({}), kafka_bootstrap="127.0.0.1:9")
    letters = [
        letter(),
        letter(topic="cx.purchase", offset=1),
        letter(topic="cx.decisions.log", offset=2),
        DeadLetter.parse(record([], offset=3)),
    ]
    report = await redrive(settings, letters, dry_run=True)
    assert report.sent == 0 and dict(report.by_topic) == {"cx.web": 1, "cx.purchase": 1}
    assert [(s.letter.offset, s.reason) for s in report.skipped] == [
        (2, "cx.decisions.log is not an input topic of prefix 'cx.'"),
        (3, "no segue.source.topic header"),
    ]
    assert report.describe().splitlines() == [
        "would re-drive 2 dead letter(s)",
        "  to cx.purchase: 1",
        "  to cx.web: 1",
        "skipped 1: cx.decisions.log is not an input topic of prefix 'cx.'",
        "skipped 1: no segue.source.topic header",
        "dry run: nothing sent",
    ]
