"""The fetch size follows the input rate: ``gather_ms`` of the bytes fetched per second."""

from __future__ import annotations

import pytest

from engine.fetchsize import CAP_BYTES, WINDOW_SECONDS, FetchSize


class Clock:
    """Seconds, kept in whole milliseconds so that windows end exactly."""

    def __init__(self) -> None:
        self.ms = 100_000

    def __call__(self) -> float:
        return self.ms / 1000


def steady(size: FetchSize, clock: Clock, bytes_per_second: int, seconds: float) -> int:
    """Fetches every 10 ms at ``bytes_per_second``; the size asked for after the last."""
    value = size.value
    for _ in range(round(seconds * 100)):
        clock.ms += 10
        value = size.fetched(bytes_per_second // 100)
    return value


def test_the_size_is_the_gather_time_of_the_rate_measured() -> None:
    clock = Clock()
    size = FetchSize(1, 10, clock=clock)
    # 1,000 events/s of 400 bytes: 10 ms of them is 4,000 bytes.
    assert steady(size, clock, 400_000, 1.0) == 4_000
    # The rate falls to a tenth: the size follows within a window.
    assert steady(size, clock, 40_000, WINDOW_SECONDS) == 400
    assert size.value == 400


def test_the_size_is_kept_for_a_window() -> None:
    clock = Clock()
    size = FetchSize(1, 10, clock=clock)
    assert steady(size, clock, 400_000, 0.99) == 1
    clock.ms += 10
    assert size.fetched(4_000) == 4_000


def test_a_trickle_and_silence_ask_for_the_floor() -> None:
    clock = Clock()
    size = FetchSize(16, 10, clock=clock)
    assert steady(size, clock, 400_000, 2.0) == 4_000
    # Silence: fetches time out empty, and the next window brings the floor back.
    for _ in range(5):
        clock.ms += 300
        size.fetched(0)
    assert size.value == 16
    # One 400-byte event a second is 4 bytes per 10 ms: the floor still.
    clock.ms += 1000
    assert size.fetched(400) == 16


def test_the_size_is_capped() -> None:
    clock = Clock()
    size = FetchSize(1, 1_000, clock=clock)
    assert steady(size, clock, 50_000_000, 1.0) == CAP_BYTES


def test_a_gather_of_zero_keeps_the_floor() -> None:
    clock = Clock()
    size = FetchSize(4_096, 0, clock=clock)
    assert steady(size, clock, 400_000, 3.0) == 4_096


@pytest.mark.parametrize(("floor", "gather_ms"), [(0, 10), (1, -1)])
def test_bad_bounds_are_refused(floor: int, gather_ms: int) -> None:
    with pytest.raises(ValueError):
        FetchSize(floor, gather_ms)
