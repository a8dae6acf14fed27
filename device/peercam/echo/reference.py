"""What the speaker plays, as the echo canceller's far end.

The speaker's thread hands over every period it writes; the microphone's thread
takes the same amount of sound for each 10 ms it captures, so the two advance in
lock-step, as WebRTC's canceller needs (it estimates the echo's delay itself, but
only behind the reference: a reference that lags the echo cannot be cancelled).
The speaker and the microphone run on two clocks that drift apart; what builds up
is trimmed, a little at a time, so the reference never falls behind by more than
one period, and a speaker that is silent or closed reads as silence.
"""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class SpeakerReference:
    def __init__(self, rate: int, slack_ms: int = 40) -> None:
        """`rate`: the microphone's, which the reference is converted to (mono).
        `slack_ms`: how much may wait unread before the oldest is dropped."""
        self.rate = rate
        self._slack = rate * slack_ms // 1000
        self._lock = threading.Lock()
        self._pending: Samples = np.zeros(0, dtype=np.int16)
        self._resampler: Any = None
        self._resampling: tuple[int, int] = (0, 0)
        self.dropped = 0  # samples trimmed for drift, for the log and tests

    def played(self, pcm: bytes, rate: int, channels: int) -> None:
        """Called from the speaker's thread with each period it wrote (S16_LE)."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if rate != self.rate:
            samples = self._resample(samples, rate)
        with self._lock:
            pending = np.concatenate((self._pending, samples))
            excess = len(pending) - self._slack
            if excess > 0:
                # Drift, or a speaker that wrote ahead: keep the newest.
                pending = pending[excess:]
                self.dropped += excess
            self._pending = pending

    def take(self, count: int) -> Samples:
        """The next `count` samples (silence for what the speaker has not played);
        called from the microphone's thread."""
        with self._lock:
            taken, self._pending = self._pending[:count], self._pending[count:]
        if len(taken) < count:
            taken = np.concatenate((taken, np.zeros(count - len(taken), dtype=np.int16)))
        return taken

    def _resample(self, samples: Samples, rate: int) -> Samples:
        # Only the speaker's thread resamples; a new rate (a new device) starts afresh.
        if self._resampling != (rate, self.rate) or self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            self._resampling = (rate, self.rate)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.int16) if out else np.zeros(0, dtype=np.int16)
