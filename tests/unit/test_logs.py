from __future__ import annotations

import logging

import orjson

from engine.logs import JsonFormatter


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("segue.worker", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_one_json_object_per_line_with_extra_fields() -> None:
    line = JsonFormatter().format(record("lag %d on %s", 5, "cx.web", partition=2))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "warning" and doc["logger"] == "segue.worker"
    assert doc["msg"] == "lag 5 on cx.web" and doc["partition"] == 2
    assert doc["ts"].endswith("+00:00")


def test_exceptions_are_kept_in_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    doc = orjson.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exc"]
