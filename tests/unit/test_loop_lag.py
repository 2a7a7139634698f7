"""The worker's event loop is probed for lateness (``segue_event_loop_lag_seconds``):
a loop held by one long step shows it, an idle one does not."""

from __future__ import annotations

import asyncio
import threading
import time

from engine.observe import LoopLag


def test_a_loop_held_by_a_long_step_shows_it_late_and_an_idle_one_on_time() -> None:
    loop = asyncio.new_event_loop()
    lags: list[float] = []
    try:
        LoopLag(loop, lags.append, interval=0.01).start()
        loop.run_until_complete(asyncio.sleep(0.1))
        idle = list(lags)
        loop.call_soon(time.sleep, 0.08)  # one step that holds the loop for 80 ms
        loop.run_until_complete(asyncio.sleep(0.1))
    finally:
        loop.close()
    assert len(idle) >= 3
    assert max(lags[len(idle) :]) >= 0.05
    # Far below the held step: what an idle loop's timers give.
    assert sorted(idle)[len(idle) // 2] < 0.02


def test_started_from_another_thread_it_probes_that_threads_loop() -> None:
    loop = asyncio.new_event_loop()
    lags: list[float] = []
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        LoopLag(loop, lags.append, interval=0.01).start()
        deadline = time.monotonic() + 5
        while len(lags) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    assert len(lags) >= 5
