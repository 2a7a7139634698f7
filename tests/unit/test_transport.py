"""The worker's consumer runs on the worker's own event loop, not in a thread of its own;
it takes its fetch wait from the settings, not Faust's fixed 1.5 s, and its fetcher asks
for the fetch size engine/fetchsize.py sets from the input rate."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from engine.app import build_app
from engine.fetchsize import FetchSize
from engine.settings import Settings


def _app(tmp_path: Path, **overrides: Any) -> Any:
    return build_app(replace(Settings.from_env({}), data_dir=tmp_path, **overrides))


@pytest.mark.parametrize(("wait_ms", "min_bytes"), [(0, 1), (25, 1), (400, 65_536)])
def test_the_worker_consumer_is_built_with_the_configured_fetch_wait(
    tmp_path: Path, wait_ms: int, min_bytes: int
) -> None:
    async def built() -> tuple[int, int]:
        app = _app(tmp_path, fetch_max_wait_ms=wait_ms, fetch_min_bytes=min_bytes)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            # What aiokafka's fetcher reads at start.
            return int(consumer._fetch_max_wait_ms), int(consumer._fetch_min_bytes)
        finally:
            await consumer.stop()

    assert asyncio.run(built()) == (wait_ms, min_bytes)


class _Fetcher:
    """What Faust's ``_fetch_records`` uses of aiokafka's fetcher: it hands out
    ``batches`` one per call, as ``fetched_records`` does."""

    _closed = False

    def __init__(self, batches: list[dict[TP, list[Any]]]) -> None:
        self.batches = batches
        self._fetch_min_bytes = 1
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)

    async def fetched_records(self, *args: Any, **kwargs: Any) -> dict[TP, list[Any]]:
        return self.batches.pop(0)


def test_the_fetcher_asks_for_the_size_the_fetched_bytes_give(tmp_path: Path) -> None:
    now = [0.0]
    tp = TP("cx.web", 0)
    # Ten records of 400 bytes (key and value), then a fetch that timed out empty.
    record = SimpleNamespace(serialized_key_size=16, serialized_value_size=384)
    fetcher = _Fetcher([{tp: [record] * 10}, {}])
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)

    async def fetch() -> list[int]:
        app = _app(tmp_path, fetch_min_bytes=8, fetch_gather_ms=500)
        app.fetch_size = FetchSize(8, 500, clock=lambda: now[0])
        thread = app.consumer._thread
        asked = []
        for _ in range(2):
            now[0] += 1.0
            records = await thread._fetch_records(consumer, {tp}, timeout=1.0)
            assert records in ({tp: [record] * 10}, {})
            asked.append(fetcher._fetch_min_bytes)
        return asked

    # 4,000 bytes in the first second, half a second of it is 2,000; none in the next.
    assert asyncio.run(fetch()) == [2_000, 8]


def test_the_consumer_runs_and_is_called_on_the_loop_that_owns_it(tmp_path: Path) -> None:
    async def run() -> tuple[bool, list[int], str, set[str]]:
        loop = asyncio.get_running_loop()
        consumer = _app(tmp_path).consumer._thread
        started: list[int] = []

        async def on_start() -> None:  # aiokafka's consumer would connect to a broker here
            started.append(threading.get_ident())

        consumer.on_start = on_start

        async def called(x: int) -> int:
            return x + threading.get_ident()

        threads_before = {t.name for t in threading.enumerate()}
        await consumer.start()
        # A coroutine and a plain function, both awaited where they are called.
        assert await consumer.call_thread(called, 1) == 1 + threading.get_ident()
        subscribed = await consumer.call_thread(lambda topics: sorted(topics), topics={"b", "a"})
        new_threads = {t.name for t in threading.enumerate()} - threads_before
        state_running = consumer.state
        await consumer.stop()
        return (
            consumer.thread_loop is loop,
            started,
            f"{state_running}/{consumer.state}/{subscribed}",
            new_threads,
        )

    same_loop, started, states, new_threads = asyncio.run(run())
    assert same_loop
    assert started == [threading.get_ident()]
    assert states == "running/shutdown/['a', 'b']"
    assert new_threads == set()


def test_a_consumer_that_cannot_start_fails_its_start(tmp_path: Path) -> None:
    async def run() -> None:
        consumer = _app(tmp_path).consumer._thread

        async def on_start() -> None:
            raise ConnectionRefusedError("no broker at 127.0.0.1:1")

        consumer.on_start = on_start
        await consumer.start()

    with pytest.raises(ConnectionRefusedError, match="no broker"):
        asyncio.run(run())
