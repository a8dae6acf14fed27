"""How fast a sound card's sample clock runs against the system's.

Two cards (a USB microphone, an I2S amplifier) each run on their own crystal, tens
of ppm apart. The echo canceller's linear filter models the echo path sample by
sample; when the microphone takes 48 004.8 samples in the time the speaker plays
48 000, the path it models slides by a sample every few seconds and the filter, which
stops adapting while the visitor talks, leaves most of the echo in exactly then
(measured: 5-12 dB cancelled in double talk at 100 ppm, 12-27 dB with the clocks
matched). Skipping whole milliseconds now and then keeps the reference from falling
behind, but only converting it at the true ratio keeps the path still.

A card's samples come (or go) at its own steady rate; the thread that reads or
writes them is only ever late. So the earliest a read or write returned, against
the samples counted, traces the card's clock: within each second the least
lateness is kept, and a straight line through those points over the last minutes
gives the rate. A restart of the count (an overrun, the card run dry) starts a new
stretch with its own offset; the stretches share the slope.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# Each second keeps its earliest point; the fit spans at most WINDOW_S of them.
BUCKET_S = 1.0
WINDOW_S = 180.0
# A card starts by taking (or holding) a burst: the start of a stretch says nothing
# about its clock.
SETTLE_S = 2.0
# The fit is used once its slope is known this well, over at least MIN_SPAN_S.
MAX_UNCERTAINTY = 2e-6
MIN_SPAN_S = 20.0
# No card's crystal is this far off; a slope beyond it is a thread starved of CPU.
MAX_ERROR = 1e-3


@dataclass(frozen=True)
class _Point:
    stretch: int
    at: float
    offset: float  # at - samples / nominal rate: falls as a fast clock gains


class ClockRate:
    """Fed from one device's thread; `error` read from any (a float, replaced whole)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.error = 0.0  # actual rate = rate * (1 + error); 0 until measured
        self.known = False
        self._points: deque[_Point] = deque()
        self._stretch = -1
        self._counted = 0
        self._started = 0.0
        self._bucket_ends = 0.0
        self._best: _Point | None = None

    def restart(self) -> None:
        """Samples were lost or the card started afresh: the count starts over."""
        self._stretch += 1
        self._counted = 0
        self._best = None
        self._started = math.nan

    def add(self, count: int, at: float, pending: int = 0) -> None:
        """`count` more samples came in (or were handed to the card) by `at`,
        time.monotonic(); `pending` of all those counted so far had not been played
        yet at `at` (a playing card's buffer)."""
        if self._stretch < 0:
            self.restart()
        if math.isnan(self._started):
            self._started, self._bucket_ends = at, at + SETTLE_S + BUCKET_S
        self._counted += count
        if at < self._started + SETTLE_S:
            return
        point = _Point(self._stretch, at, at - (self._counted - pending) / self.rate)
        # The earliest against the clock as measured so far, not the nominal one: a
        # card far off would otherwise always have its first (or last) point chosen.
        if self._best is None or point.offset + self.error * at < (
            self._best.offset + self.error * self._best.at
        ):
            self._best = point
        if at >= self._bucket_ends:
            self._points.append(self._best)
            self._best = None
            self._bucket_ends = at + BUCKET_S
            while self._points and self._points[0].at < at - WINDOW_S:
                self._points.popleft()
            self._fit()

    def _fit(self) -> None:
        """A common slope through every stretch's points (each its own offset)."""
        stretches: dict[int, list[_Point]] = {}
        for point in self._points:
            stretches.setdefault(point.stretch, []).append(point)
        sxx = sxy = 0.0
        fitted: list[tuple[float, float]] = []
        for points in stretches.values():
            mean_at = sum(p.at for p in points) / len(points)
            mean_offset = sum(p.offset for p in points) / len(points)
            for p in points:
                fitted.append((p.at - mean_at, p.offset - mean_offset))
        for dt, do in fitted:
            sxx += dt * dt
            sxy += dt * do
        freedom = len(fitted) - len(stretches) - 1
        span = sum(points[-1].at - points[0].at for points in stretches.values())
        if span < MIN_SPAN_S or freedom < 1 or sxx <= 0:
            return
        slope = sxy / sxx
        residual = sum((do - slope * dt) ** 2 for dt, do in fitted) / freedom
        if math.sqrt(residual / sxx) > MAX_UNCERTAINTY or abs(slope) > MAX_ERROR:
            return
        # offset = at - n / rate falls by `error` seconds per second on a fast card.
        self.error = -slope
        self.known = True
