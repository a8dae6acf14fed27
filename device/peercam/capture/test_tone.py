"""The built-in microphone: a steady sine tone, for audio without a sound card."""

from __future__ import annotations

import math

import av
import numpy as np

from peercam.capture.source import PacedSource
from peercam.media import CapturedAudio

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, one Opus frame


class TestToneMicrophone(PacedSource[CapturedAudio]):
    __test__ = False  # not a pytest test class, despite the name
    kind = "audio"
    name = "test-tone"

    def __init__(self, frequency: float, level: float = 0.25) -> None:
        super().__init__(FRAME_SAMPLES / SAMPLE_RATE)
        self.frequency = frequency
        self._amplitude = level * 32767
        self._phase = 0.0

    def _capture(self, now: float) -> CapturedAudio:
        step = 2 * math.pi * self.frequency / SAMPLE_RATE
        phases = self._phase + step * np.arange(FRAME_SAMPLES)
        self._phase = float((phases[-1] + step) % (2 * math.pi))
        samples = (self._amplitude * np.sin(phases)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        return CapturedAudio(frame, now)
