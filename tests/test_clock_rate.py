"""A sound card's clock measured from when its thread's reads (or writes) return
(echo/clock_rate.py): on a virtual clock, reads late by a busy thread's noise."""

from __future__ import annotations

import numpy as np
import pytest

from peercam.echo.clock_rate import MAX_ERROR, ClockRate

RATE = 48_000
PERIOD = 960  # 20 ms


def _run(clock: ClockRate, error: float, seconds: float, seed: int, start: float = 0.0) -> float:
    """Periods of a card `error` off, each read late by an exponential 0.5 ms (at
    most 30 ms); returns the time of the last."""
    late = np.minimum(np.random.default_rng(seed).exponential(0.0005, int(seconds * 50)), 0.03)
    at = start
    for index in range(int(seconds * 50)):
        at = start + (index + 1) * PERIOD / (RATE * (1 + error))
        clock.add(PERIOD, at + late[index])
    return at


@pytest.mark.parametrize("error", [1e-4, -1e-4, 3e-5, 0.0])
def test_a_cards_clock_is_measured_within_a_few_ppm_in_half_a_minute(error: float) -> None:
    clock = ClockRate(RATE)
    ended = _run(clock, error, 15, seed=1)
    assert not clock.known and clock.error == 0.0  # nothing is converted on a guess
    _run(clock, error, 15, seed=5, start=ended)
    assert clock.known and abs(clock.error - error) < 5e-6, clock.error


def test_a_speaker_card_is_measured_by_what_it_still_holds() -> None:
    """A speaker written on the system's clock (so its writes never block) while the
    card plays 100 ppm fast: the frames it still holds after each write fall, and
    they, not the writes' times, give its clock."""
    clock = ClockRate(RATE)
    played_per_write = PERIOD * (1 + 1e-4)
    held = 2.0 * PERIOD
    for index in range(2000):
        held -= played_per_write - PERIOD
        clock.add(PERIOD, (index + 1) * PERIOD / RATE, round(held))
    assert abs(clock.error - 1e-4) < 3e-6, clock.error


def test_a_restart_after_lost_samples_keeps_the_measure() -> None:
    """An overrun loses samples: the count starts over at a new offset, and the
    stretches before and after still give one slope."""
    clock = ClockRate(RATE)
    ended = _run(clock, 1e-4, 30, seed=2)
    clock.restart()
    _run(clock, 1e-4, 30, seed=3, start=ended + 0.3)
    assert abs(clock.error - 1e-4) < 2e-6, clock.error


def test_a_burst_at_the_start_does_not_bend_the_line() -> None:
    """A card takes its first periods at once (its buffer filling): 200 ms of writes
    return immediately, then the card's own pace."""
    clock = ClockRate(RATE)
    for index in range(10):
        clock.add(PERIOD, index * 0.0001)
    _run(clock, 5e-5, 40, seed=4, start=0.001 - 0.2)
    assert abs(clock.error - 5e-5) < 3e-6, clock.error


def test_a_thread_starved_of_cpu_is_not_taken_for_a_clock() -> None:
    """Reads falling further behind by 1 % (the board overloaded, not a crystal):
    no rate is measured from them."""
    clock = ClockRate(RATE)
    for index in range(3000):
        clock.add(PERIOD, (index + 1) * PERIOD / RATE * 1.01)
    assert clock.error == 0.0
    assert MAX_ERROR < 0.01
