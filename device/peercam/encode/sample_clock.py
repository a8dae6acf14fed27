"""RTP timestamps for audio that count samples.

An audio frame's capture time carries the capture thread's scheduling jitter
(measured on a busy 2-core machine: 20 ms frames handed over 0.25 to 63 ms apart).
Stamped from those times, consecutive Opus frames overlapped or left gaps, and
Chromium's jitter buffer concealed or discarded audio and grew to absorb it. A
microphone delivers contiguous samples, so consecutive frames are stamped exactly
their length apart (RFC 3550 §5.1); the capture time only anchors the count, and
re-anchors it when the source really jumped (a restart, frames skipped when behind).
"""

from __future__ import annotations

from peercam.media import rtp_timestamp

# Beyond this, the capture time and the sample count disagree for a reason other than
# jitter: the source restarted or skipped. Above the jitter measured under load, and
# small enough that audio which fell behind is not held back for long.
REANCHOR_SECONDS = 0.1

_WRAP = 1 << 32


class SampleClock:
    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._next: int | None = None

    def stamp(self, captured_at: float, samples: int) -> int:
        """The timestamp of a frame of `samples` (in the clock's rate) captured at
        `captured_at`; the next frame follows it directly."""
        from_capture = rtp_timestamp(captured_at, self.clock_rate)
        if self._next is None or abs(_signed(from_capture - self._next)) > (
            REANCHOR_SECONDS * self.clock_rate
        ):
            self._next = from_capture
        stamp = self._next
        self._next = (stamp + samples) % _WRAP
        return stamp


def _signed(difference: int) -> int:
    """A difference of two 32-bit timestamps, across a wrap."""
    difference %= _WRAP
    return difference - _WRAP if difference >= _WRAP // 2 else difference
