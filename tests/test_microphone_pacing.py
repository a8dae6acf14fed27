"""How the microphone's thread paces its reads (audio/alsa_microphone.py ReadPacer),
on a virtual clock so the figures are exact: a device that waits is never held back,
so a backlog in it drains and every later capture is read the moment it is complete;
a device that never waits is read at its rate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from peercam.audio.alsa_microphone import MAX_AHEAD, ReadPacer

PERIOD = 0.02


@dataclass
class FedDevice:
    """A capture device fed one period every `interval` seconds (a card whose clock
    runs at 1/interval periods a second, or a FIFO written by a real-time producer),
    holding `backlog` periods already when opened. A read returns the oldest period
    at once if one is there, else waits for the next."""

    interval: float
    backlog: int
    written: list[float] = field(default_factory=list)  # when each period was complete
    read: int = 0

    def __post_init__(self) -> None:
        self.written = [-self.interval * (self.backlog - i) for i in range(self.backlog)]

    def read_at(self, now: float) -> tuple[float, float]:
        """(when the read returns, how old the period it returns is then)."""
        while len(self.written) <= self.read:
            self.written.append(self.written[-1] + self.interval if self.written else 0.0)
        complete = self.written[self.read]
        self.read += 1
        returned = max(now, complete)
        return returned, returned - complete


def staleness(device: FedDevice, reads: int) -> list[float]:
    now = 0.0
    pacer = ReadPacer(PERIOD, now)
    ages = []
    for _ in range(reads):
        started = now
        returned, age = device.read_at(started)
        ages.append(age)
        now = returned + 0.001  # the thread's own work on the capture
        now += pacer.wait_after(started, returned, PERIOD, now)
    return ages


@pytest.mark.parametrize("backlog", [1, 3])
@pytest.mark.parametrize("clock", [1.0, 1.0001, 0.9999])
def test_a_backlog_drains_and_every_later_capture_is_read_fresh(backlog: int, clock: float) -> None:
    # A reader kept to its own schedule behind the backlog would read every capture
    # `backlog` periods late for as long as the device runs.
    ages = staleness(FedDevice(PERIOD / clock, backlog), 3000)
    assert max(ages[backlog + 1 :]) < 0.0015, max(ages[backlog + 1 :])


def test_a_device_that_never_waits_is_read_at_its_rate() -> None:
    now = 0.0
    pacer = ReadPacer(PERIOD, now)
    read = 0.0
    for _ in range(1000):
        read += PERIOD  # the file returns a period at once
        now += 0.0005
        now += pacer.wait_after(now - 0.0005, now - 0.0005, PERIOD, now)
    assert now <= read <= now + MAX_AHEAD * PERIOD + 1e-9, (read, now)
    assert read - now == pytest.approx(MAX_AHEAD * PERIOD)


def test_after_a_long_stall_a_device_that_never_waits_does_not_replay_it() -> None:
    now = 0.0
    pacer = ReadPacer(PERIOD, now)
    for _ in range(10):
        now += pacer.wait_after(now, now, PERIOD, now)
    now += 5.0  # the thread stalled
    burst = 0
    while pacer.wait_after(now, now, PERIOD, now) == 0.0:
        burst += 1
    assert burst <= MAX_AHEAD + 1, burst
