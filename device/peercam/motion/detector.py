"""Frame differencing on a small grey picture.

Each analysed frame's luma is shrunk by averaging blocks of pixels (which also
averages sensor noise away), compared with the previous one, and the share of
watched points whose brightness changed by more than `threshold` is the motion
measure. Masked rectangles are never watched. The first frame over `min_area` after
a quiet spell (or after `cooldown` seconds) starts a motion event; further motion
within an event only continues it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from peercam.config import MotionConfig, MotionMask

# The picture is reduced to about this many points across before comparing.
ANALYSIS_WIDTH = 80

Luma = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class MotionReading:
    changed: float  # share of watched points that changed
    moving: bool


def shrink(luma: Luma, width: int = ANALYSIS_WIDTH) -> npt.NDArray[np.float32]:
    """Average `luma` over square blocks so that it is about `width` points wide."""
    block = max(1, luma.shape[1] // width)
    rows, columns = luma.shape[0] // block, luma.shape[1] // block
    cropped = luma[: rows * block, : columns * block].astype(np.float32)
    shrunk: npt.NDArray[np.float32] = cropped.reshape(rows, block, columns, block).mean(axis=(1, 3))
    return shrunk


def watch_mask(shape: tuple[int, int], masks: Sequence[MotionMask]) -> npt.NDArray[np.bool_]:
    """True where motion counts: everywhere but the masked rectangles."""
    rows, columns = shape
    watched = np.ones(shape, dtype=bool)
    for mask in masks:
        top, left = int(mask.y * rows), int(mask.x * columns)
        bottom = int(np.ceil((mask.y + mask.height) * rows))
        right = int(np.ceil((mask.x + mask.width) * columns))
        watched[top:bottom, left:right] = False
    return watched


class MotionDetector:
    def __init__(
        self,
        config: MotionConfig,
        on_motion: Callable[[], None],
        on_continuing: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self._on_motion = on_motion
        self._on_continuing = on_continuing
        self._previous: npt.NDArray[np.float32] | None = None
        self._watched: npt.NDArray[np.bool_] | None = None
        self._last_event: float | None = None
        self._moving = False
        self.events = 0

    def use(self, config: MotionConfig) -> None:
        """New thresholds and masks, from the next picture on (called on the event
        loop, where `feed` runs too)."""
        self.config = config
        self._watched = (
            None
            if self._previous is None
            else watch_mask((self._previous.shape[0], self._previous.shape[1]), config.masks)
        )

    def feed(self, luma: Luma, now: float) -> MotionReading:
        small = shrink(luma)
        previous, self._previous = self._previous, small
        if previous is None or previous.shape != small.shape:
            self._watched = watch_mask((small.shape[0], small.shape[1]), self.config.masks)
            return MotionReading(0.0, False)
        assert self._watched is not None
        watched_points = int(self._watched.sum())
        if watched_points == 0:
            return MotionReading(0.0, False)
        changed_points = (np.abs(small - previous) > self.config.threshold) & self._watched
        changed = float(changed_points.sum()) / watched_points
        moving = changed >= self.config.min_area
        if moving:
            cooled = (
                self._last_event is None or now - self._last_event >= self.config.cooldown_seconds
            )
            if not self._moving and cooled:
                self._last_event = now
                self.events += 1
                self._on_motion()
            elif self._last_event is not None:
                self._on_continuing()
        self._moving = moving
        return MotionReading(changed, moving)
