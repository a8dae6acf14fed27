"""An ALSA capture device (pyalsaaudio) as peercam's microphone.

Reads block in a thread of its own, one period at a time, and each period goes to the
event loop, where the shared audio encoders take it from their bounded queues. A
device that makes a read wait paces itself (ReadPacer); one that never does (alsa-lib's
file plugin on a file, some virtual devices) is paced here against the clock. A
missing or failing device is logged and retried with backoff; video is untouched
meanwhile.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from peercam.capture.source import ThreadedSource
from peercam.media import CapturedAudio

logger = logging.getLogger(__name__)


# A read that waited this share of a period was held by the device until its samples
# came: the device is the clock, and what it returned is fresh.
DEVICE_WAIT = 0.25
# How far reads that never wait may run ahead of the clock, and fall behind it before
# the rest is let go, in periods.
MAX_AHEAD = 5
MAX_BEHIND = 10


class ReadPacer:
    """When to read next. Reads of a device that never waits (a file) are spread at
    the device's rate, up to MAX_AHEAD periods ahead of the clock. Reads of one that
    waits are never held back: a capture left waiting in the device is old when read,
    and the echo canceller times the speaker's reference by when a capture is read, so
    a reader kept to a schedule of its own behind a standing backlog (a card whose
    clock runs a little fast, a FIFO fed in bursts) would pair each capture with
    sound the speaker played later, which the canceller cannot cancel."""

    def __init__(self, period: float, now: float) -> None:
        self.period = period
        self._deadline = now  # when the samples read so far end, by the clock

    def wait_after(self, started: float, returned: float, seconds: float, now: float) -> float:
        """Seconds to wait before the next read, after one begun at `started` that
        returned `seconds` of samples at `returned` (time.monotonic(), as is `now`)."""
        if returned - started >= DEVICE_WAIT * self.period:
            self._deadline = returned
        else:
            self._deadline += seconds
        ahead = self._deadline - now
        if ahead < -MAX_BEHIND * self.period:
            self._deadline = now  # long stalled: what was missed is gone, not replayed
            return 0.0
        return max(0.0, ahead - MAX_AHEAD * self.period)


@dataclass(frozen=True)
class AlsaSettings:
    device: str
    rate: int
    channels: int
    period_ms: int = 20


def import_alsaaudio() -> Any:
    try:
        return importlib.import_module("alsaaudio")
    except ImportError:
        return None


def open_pcm(settings: AlsaSettings, capture: bool) -> Any:
    alsaaudio = import_alsaaudio()
    if alsaaudio is None:
        raise OSError("pyalsaaudio is not installed")
    return alsaaudio.PCM(
        alsaaudio.PCM_CAPTURE if capture else alsaaudio.PCM_PLAYBACK,
        alsaaudio.PCM_NORMAL,
        device=settings.device,
        channels=settings.channels,
        rate=settings.rate,
        format=alsaaudio.PCM_FORMAT_S16_LE,
        periodsize=settings.rate * settings.period_ms // 1000,
    )


class AlsaMicrophone(ThreadedSource[Any, CapturedAudio]):
    kind = "audio"

    def __init__(self, settings: AlsaSettings, backoff: tuple[float, float] = (1.0, 30.0)) -> None:
        super().__init__(backoff)
        self.settings = settings
        self.name = f"alsa:{settings.device}"
        self.label = f"microphone {settings.device}"
        # Half-duplex talkback silences the microphone while the speaker plays, so
        # the viewer's own voice does not come back to them as echo.
        self.muted = False
        # Applied to every capture in this thread before anyone gets it (the echo
        # canceller); it may hold back part of a capture for the next one.
        # It is told when the capture's last sample came in (time.monotonic()), and
        # whether samples were lost before it (the first capture, or an overrun):
        # otherwise each capture's samples follow the last one's.
        self.processor: (
            Callable[[npt.NDArray[np.int16], float, bool], npt.NDArray[np.int16]] | None
        ) = None
        self.layout = "mono" if settings.channels == 1 else "stereo"

    def _open(self) -> Any:
        return open_pcm(self.settings, capture=True)

    def _close(self, pcm: Any) -> None:
        pcm.close()

    def _use(self, pcm: Any) -> None:
        logger.info("%s capturing at %d Hz", self.label, self.settings.rate)
        self._capture(pcm)

    def _capture(self, pcm: Any) -> None:
        s = self.settings
        pacer = ReadPacer(s.period_ms / 1000, time.monotonic())
        after_gap = True
        while not self._stopping.is_set():
            started = time.monotonic()
            length, data = pcm.read()
            captured_at = time.monotonic()
            if length < 0:  # an overrun: ALSA reports it and carries on
                logger.debug("microphone overrun")
                after_gap = True
                continue
            if length == 0:
                continue
            samples = np.frombuffer(data, dtype="<i2")[: length * s.channels]
            self._deliver(samples, captured_at, after_gap)
            after_gap = False
            wait = pacer.wait_after(started, captured_at, length / s.rate, time.monotonic())
            if wait > 0:
                self._stopping.wait(wait)

    def _deliver(self, samples: npt.NDArray[np.int16], captured_at: float, after_gap: bool) -> None:
        processor = self.processor
        if processor is not None:
            samples = processor(samples, captured_at, after_gap)
            if not len(samples):
                return
        if self.muted:
            samples = np.zeros_like(samples)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=self.layout)
        frame.sample_rate = self.settings.rate
        self._hand_over(CapturedAudio(frame, captured_at))
