"""RTP timestamps for audio that count samples.

An audio frame's capture time carries the capture thread's scheduling jitter
(measured on a busy 2-core machine: 20 ms frames handed over 0.25 to 63 ms apart).
Stamped from those times, consecutive Opus frames overlapped or left gaps, and
Chromium's jitter buffer concealed or discarded audio and grew to absorb it. A
microphone delivers contiguous samples, so consecutive frames are stamped exactly
their length apart (RFC 3550 §5.1), and the capture time only anchors the count.

Samples can still be lost: a sound card overruns when its reader falls behind, the
test tone skips frames it is too late for. Then every frame from there on is captured
later than its count says, while jitter makes only some frames late. So the count
moves forward by the smallest lateness of the last few frames once that exceeds half
a frame; the receiver sees a gap, as for a lost packet, instead of audio that comes
ever later than its timestamps and a jitter buffer grown to hold it. A larger jump
(a restart) re-anchors at once.
"""

from __future__ import annotations

from collections import deque

from peercam.media import rtp_timestamp

# Frames over which the smallest lateness is taken: longer than a stall's catch-up
# burst (the reads after a late one return at once), short enough to follow a gap soon.
WINDOW_FRAMES = 10
# Beyond this the source restarted or stalled: follow its capture time at once.
REANCHOR_SECONDS = 0.1

_WRAP = 1 << 32


class SampleClock:
    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._next: int | None = None
        # How much later than its count each recent frame was captured, in samples.
        self._lateness: deque[int] = deque(maxlen=WINDOW_FRAMES)

    def stamp(self, captured_at: float, samples: int) -> int:
        """The timestamp of a frame of `samples` (in the clock's rate) captured at
        `captured_at`; the next frame follows it directly unless samples were lost."""
        from_capture = rtp_timestamp(captured_at, self.clock_rate)
        if self._next is None:
            self._next = from_capture
        lateness = _signed(from_capture - self._next)
        if abs(lateness) > REANCHOR_SECONDS * self.clock_rate:
            self._next = from_capture
            self._lateness.clear()
        else:
            self._lateness.append(lateness)
            lost = min(self._lateness)
            if len(self._lateness) == WINDOW_FRAMES and lost > samples // 2:
                self._next = (self._next + lost) % _WRAP
                self._lateness = deque((v - lost for v in self._lateness), WINDOW_FRAMES)
        stamp = self._next
        self._next = (stamp + samples) % _WRAP
        return stamp


def _signed(difference: int) -> int:
    """A difference of two 32-bit timestamps, across a wrap."""
    difference %= _WRAP
    return difference - _WRAP if difference >= _WRAP // 2 else difference
