"""The worker's consumer takes its fetch wait from the settings, not Faust's fixed 1.5 s."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from engine.app import build_app
from engine.settings import Settings


@pytest.mark.parametrize(("wait_ms", "min_bytes"), [(0, 1), (25, 1), (400, 65_536)])
def test_the_worker_consumer_is_built_with_the_configured_fetch_wait(
    tmp_path: Path, wait_ms: int, min_bytes: int
) -> None:
    async def built() -> tuple[int, int]:
        settings = replace(
            Settings.from_env({}),
            data_dir=tmp_path,
            fetch_max_wait_ms=wait_ms,
            fetch_min_bytes=min_bytes,
        )
        app = build_app(settings)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            # What aiokafka's fetcher reads at start.
            return int(consumer._fetch_max_wait_ms), int(consumer._fetch_min_bytes)
        finally:
            await consumer.stop()

    assert asyncio.run(built()) == (wait_ms, min_bytes)
