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

Those jumps keep the reference from lagging; they do not keep the echo's path still
between them, and a canceller's filter cannot follow a path that slides while the
visitor talks. So once both cards' clocks are measured (clock_rate.py) the reference
is converted at their true ratio, and its samples are timed at the microphone's true
rate: the reference then stays where the echo is with no jump at all.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from peercam.echo.clock_rate import ClockRate

logger = logging.getLogger(__name__)

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
# The two cards' clocks are converted between only once they are this far apart. A
# thread's lateness is not only noise: on a board whose load changes, its least
# lateness moves too (up to half a millisecond here), which over a minute reads as a
# few ppm — the test room, both cards on the system's clock, measured -5.8 ppm with
# two busy loops beside it. One card for both (the usual doorbell) is 0 apart.
DRIFT_DEAD_BAND = 10e-6


class SpeakerReference:
    def __init__(self, rate: int) -> None:
        """`rate`: the microphone's, which the reference is converted to (mono)."""
        self.rate = rate
        self._lock = threading.Lock()
        self._pending: Samples = np.zeros(0, dtype=np.int16)
        self._head_at = 0.0  # when the first pending sample plays
        self._resampler: Any = None
        self._speaker_rate = 0
        self._speaker_clock: ClockRate | None = None
        # The microphone's clock, measured in its thread (set by the canceller).
        self.capture_clock: ClockRate | None = None
        # Converting at the two clocks' ratio (decided in the speaker's thread, once
        # both are known and far enough apart), and the real length of a sample of
        # the reference (the microphone's true rate while converting).
        self.following_clocks = False
        self._sample_s = 1 / rate
        self.dropped = 0  # samples skipped to keep up, for the tests
        self.resynced = 0  # pauses in the speaker's writes, played as silence
        self.retimed = 0  # times the card was found to play sooner than counted
        self._steady_lead: float | None = None  # the lead while the card writes steadily
        self._lead_peak = -1.0
        self._window_ends = 0.0

    def played(
        self, pcm: bytes, rate: int, channels: int, written_at: float, queued: int | None = None
    ) -> None:
        """Called from the speaker's thread with each period (S16_LE) as written;
        `queued`: the frames the card then held unplayed, if it can say."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if rate != self._speaker_rate or self._speaker_clock is None:
            self._speaker_rate, self._speaker_clock = rate, ClockRate(rate)
            self._resampler = None
            self.following_clocks = False
        clock = self._speaker_clock
        count = len(samples)
        samples = self._convert(samples, rate, self._ratio(rate, clock))
        with self._lock:
            pending = self._pending
            sample_s = self._sample_s
            gap = written_at - (self._head_at + len(pending) * sample_s)
            if not len(pending):
                if gap > TOLERANCE_MS / 1000:  # a pause: the card starts afresh
                    clock.restart()
                self._head_at = max(written_at, self._head_at)
            elif gap > TOLERANCE_MS / 1000:  # the card ran dry: it played silence
                silence = np.zeros(round(gap / sample_s), np.int16)
                pending = np.concatenate((pending, silence))
                self.resynced += 1
                self._restart_lead()
                clock.restart()
            else:
                self._follow_lead(-gap, written_at)
            pending = np.concatenate((pending, samples))
            excess = len(pending) - self.rate * KEPT_MS // 1000
            if excess > 0:
                pending = pending[excess:]
                self._head_at += excess * sample_s
                self.dropped += excess
            self._pending = pending
        if queued is not None:  # a card that cannot say is not measured
            clock.add(count, written_at, queued)

    def _ratio(self, rate: int, speaker: ClockRate) -> float:
        """Microphone samples per speaker sample: the rates', and the clocks' once
        both are measured and DRIFT_DEAD_BAND apart (from then on, as measured)."""
        mic = self.capture_clock
        if not self.following_clocks and mic is not None and mic.known and speaker.known:
            apart = (1 + mic.error) / (1 + speaker.error) - 1
            if abs(apart) >= DRIFT_DEAD_BAND:
                self.following_clocks = True
                logger.info(
                    "echo cancellation: the microphone's clock runs %+.1f ppm and the"
                    " speaker's %+.1f ppm against the system's; the reference follows"
                    " their ratio", mic.error * 1e6, speaker.error * 1e6,
                )  # fmt: skip
        if not self.following_clocks or mic is None:
            return self.rate / rate
        return self.rate * (1 + mic.error) / (rate * (1 + speaker.error))

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
            mic = self.capture_clock
            error = mic.error if self.following_clocks and mic is not None else 0.0
            self._sample_s = 1 / (self.rate * (1 + error))
            pending = self._pending
            behind = (start - self._head_at) / self._sample_s
            if len(pending) and behind > self.rate * TOLERANCE_MS / 1000:
                # Older than this frame by more than the noise: skip ahead of it.
                skip = min(len(pending), round(behind) + self.rate * LEAD_MS // 1000)
                pending = pending[skip:]
                self._head_at += skip * self._sample_s
                self.dropped += skip
            taken, self._pending = pending[:count], pending[count:]
            self._head_at += len(taken) * self._sample_s
        if len(taken) < count:
            taken = np.concatenate((taken, np.zeros(count - len(taken), dtype=np.int16)))
        return taken

    def _convert(self, samples: Samples, rate: int, ratio: float) -> Samples:
        """The speaker's samples as the microphone takes them: at its rate and, once
        the two clocks are measured, at their true ratio. libsamplerate's ratio may
        change from one call to the next (it glides across the call), so an estimate
        that improves moves nothing audibly. Only the speaker's thread calls it."""
        if ratio == 1.0 and self._resampler is None:
            # Nothing measured yet, same rates: passed through exactly. Starting to
            # convert later holds back the converter's look-ahead (20 samples) for one
            # period, which the reference's lead (a period or more) absorbs.
            return samples
        if self._resampler is None:
            import samplerate  # only once there is something to convert

            self._resampler = samplerate.Resampler("sinc_fastest", channels=1)
        out = self._resampler.process(samples.astype(np.float32) / 32768, ratio, False)
        converted: Samples = np.clip(np.round(out * 32768), -32768, 32767).astype(np.int16)
        return converted
