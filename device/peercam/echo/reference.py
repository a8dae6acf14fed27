"""What the speaker plays, as the echo canceller's far end.

The canceller pairs each 10 ms of microphone sound with 10 ms of what the speaker
played, and can only cancel an echo whose sound it was given no later than the echo
itself: a reference that lags the echo leaves it in. So the reference keeps a time
for its samples and the microphone's thread asks for the reference of the 10 ms its
frame began at. The speaker's thread hands over each period as it writes it: a card
plays what it is given in order, from its buffer, so a period written in a burst
plays after the one before it (not when written), and a period written after a pause
plays when written (the pause was silence). The microphone was late by more than
its thread's noise, or the speaker's clock runs fast: what the frame is past is
skipped, landing the reference a little ahead. What the speaker has not played
reads as silence. The jumps are a few milliseconds and rare; the canceller's delay
estimate absorbs them.

A card whose clock runs fast plays its samples sooner than the nominal rate says,
so counting them would leave the reference further behind the echo the longer a
call lasts (0.01 % is 6 ms a minute), until it lags more than the echo's own delay.
What shows it is how far the newest sample's time runs ahead of its write: with a
card writing steadily that lead is constant, and a late thread only shortens it, so
its largest value over half a second is the card's; when that grows, the samples
played sooner by as much.
"""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

# Timing noise the reference ignores, on either side: more than the two threads'
# jitter, well under the echo's own delay.
TOLERANCE_MS = 10
# Where the reference lands after catching up with the microphone: a little ahead.
LEAD_MS = 5
# What may wait unread at most (a microphone that stopped reading).
KEPT_MS = 500
# How often the lead of the writes is checked, and by how much it may grow first.
LEAD_WINDOW_S = 0.5
# The fastest a card's clock is taken to run against the system's (2 %; real ones
# are within 0.01 %).
MAX_DRIFT = 0.02
LEAD_GROWTH_MS = 2


class SpeakerReference:
    def __init__(self, rate: int) -> None:
        """`rate`: the microphone's, which the reference is converted to (mono)."""
        self.rate = rate
        self._lock = threading.Lock()
        self._pending: Samples = np.zeros(0, dtype=np.int16)
        self._head_at = 0.0  # when the first pending sample plays
        self._resampler: Any = None
        self._resampling: tuple[int, int] = (0, 0)
        self.dropped = 0  # samples skipped to keep up, for the tests
        self.resynced = 0  # pauses in the speaker's writes, played as silence
        self.retimed = 0  # times the card was found to play sooner than counted
        self._steady_lead: float | None = None  # the lead while the card writes steadily
        self._lead_peak = -1.0
        self._window_ends = 0.0

    def played(self, pcm: bytes, rate: int, channels: int, written_at: float) -> None:
        """Called from the speaker's thread with each period (S16_LE) as written."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if rate != self.rate:
            samples = self._resample(samples, rate)
        with self._lock:
            pending = self._pending
            gap = written_at - (self._head_at + len(pending) / self.rate)
            if not len(pending):
                self._head_at = max(written_at, self._head_at)
            elif gap > TOLERANCE_MS / 1000:  # the card ran dry: it played silence
                pending = np.concatenate((pending, np.zeros(round(gap * self.rate), np.int16)))
                self.resynced += 1
                self._restart_lead()
            else:
                self._follow_lead(-gap, written_at)
            pending = np.concatenate((pending, samples))
            excess = len(pending) - self.rate * KEPT_MS // 1000
            if excess > 0:
                pending = pending[excess:]
                self._head_at += excess / self.rate
                self.dropped += excess
            self._pending = pending

    def _restart_lead(self) -> None:
        """The card starts afresh: its steady lead is measured again."""
        self._steady_lead = None
        self._lead_peak = -1.0
        self._window_ends = 0.0

    def _follow_lead(self, lead: float, written_at: float) -> None:
        """`lead`: how far the period just written is counted to play after its
        write. Called with the lock held."""
        self._lead_peak = max(self._lead_peak, lead)
        if written_at < self._window_ends:
            return
        growth = self._lead_peak - (self._steady_lead or 0.0)
        if self._steady_lead is None or growth > MAX_DRIFT * LEAD_WINDOW_S:
            # The first window, or a lead grown faster than any card's clock runs:
            # the writer filled the card's buffer further (a card takes its first
            # periods at once), which moves no sound.
            self._steady_lead = self._lead_peak
        elif growth > LEAD_GROWTH_MS / 1000:
            # A card running fast: its samples played sooner than counted. Taking
            # them as older lets take() skip what the microphone is already past.
            self._head_at -= self._lead_peak - self._steady_lead
            self.retimed += 1
        self._lead_peak = -1.0
        self._window_ends = written_at + LEAD_WINDOW_S

    def take(self, count: int, start: float) -> Samples:
        """The `count` samples of the reference for the microphone's frame that began
        at `start` (time.monotonic()); called from the microphone's thread."""
        with self._lock:
            pending = self._pending
            behind = (start - self._head_at) * self.rate
            if len(pending) and behind > self.rate * TOLERANCE_MS / 1000:
                # Older than this frame by more than the noise: skip ahead of it.
                skip = min(len(pending), round(behind) + self.rate * LEAD_MS // 1000)
                pending = pending[skip:]
                self._head_at += skip / self.rate
                self.dropped += skip
            taken, self._pending = pending[:count], pending[count:]
            self._head_at += len(taken) / self.rate
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
