"""The built-in camera: a moving test pattern with its capture time burned in."""

from __future__ import annotations

import time

import av
import numpy as np
import numpy.typing as npt

from peercam.capture import timecode
from peercam.capture.source import PacedSource
from peercam.media import CapturedVideo

_NOISE_FIELDS = 7

# Colour bars as (Y, U, V), video range.
_BARS = [
    (180, 128, 128),  # grey
    (168, 44, 136),  # yellow
    (145, 147, 44),  # cyan
    (133, 63, 52),  # green
    (63, 193, 204),  # magenta
    (51, 109, 212),  # red
    (28, 212, 120),  # blue
]


class TestPatternCamera(PacedSource[CapturedVideo]):
    """Scrolling colour bars, a bouncing box, and the time code along the top.

    Planes are built once, wider than the frame; each frame is a shifted view of them,
    so making a 720p frame costs a few copies rather than per-pixel arithmetic.
    Sensor-like noise (a few precomputed fields, cycled) makes the picture cost an
    encoder about what a real camera's does: a clean synthetic pattern compresses to a
    fraction of a real scene's bitrate and would flatter every per-packet figure.
    """

    __test__ = False  # not a pytest test class, despite the name
    kind = "video"
    name = "test-pattern"

    def __init__(self, width: int, height: int, fps: int, noise: int = 12) -> None:
        super().__init__(1.0 / fps)
        self.width, self.height, self.fps = width, height, fps
        bar = max(2, (width // len(_BARS)) & ~1)
        period = bar * len(_BARS)
        self._period = period
        wide = width + period
        columns = np.arange(wide) // bar % len(_BARS)
        table = np.array(_BARS, dtype=np.uint8)
        self._y = np.broadcast_to(table[columns, 0], (height, wide)).copy()
        self._u = np.broadcast_to(table[columns[::2], 1], (height // 2, wide // 2)).copy()
        self._v = np.broadcast_to(table[columns[::2], 2], (height // 2, wide // 2)).copy()
        self._box = max(16, (height // 6) & ~1)
        self._count = 0
        rng = np.random.default_rng(1)
        # Values 16..235 plus at most 12 either way stay within 0..255: no wrap-around.
        self._noise = (
            [
                rng.integers(-noise, noise + 1, (height, width), dtype=np.int16).astype(np.uint8)
                for _ in range(_NOISE_FIELDS)
            ]
            if noise
            else []
        )

    def _capture(self, now: float) -> CapturedVideo:
        # Only even shifts keep luma and chroma aligned.
        shift = (self._count * 4) % self._period & ~1
        w, h = self.width, self.height
        yuv = np.empty((h * 3 // 2, w), dtype=np.uint8)
        luma = yuv[:h]
        luma[:] = self._y[:, shift : shift + w]
        if self._noise:
            # uint8 addition wraps, so the stored two's-complement offsets subtract too.
            luma += self._noise[self._count % len(self._noise)]
        chroma = yuv[h:].reshape(2, h // 2, w // 2)
        chroma[0] = self._u[:, shift // 2 : shift // 2 + w // 2]
        chroma[1] = self._v[:, shift // 2 : shift // 2 + w // 2]
        self._draw_box(luma, chroma)
        chroma[:, : timecode.ROWS // 2, :] = 128
        timecode.burn(luma, int(time.time() * 1000))
        self._count += 1
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        return CapturedVideo(frame, now)

    def _draw_box(self, luma: npt.NDArray[np.uint8], chroma: npt.NDArray[np.uint8]) -> None:
        size, w, h = self._box, self.width, self.height
        travel_x, travel_y = max(1, w - size), max(1, h - size - timecode.ROWS)
        x = _bounce(self._count * 6, travel_x) & ~1
        y = (_bounce(self._count * 4, travel_y) + timecode.ROWS) & ~1
        luma[y : y + size, x : x + size] = 235
        chroma[:, y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = 128


def _bounce(position: int, travel: int) -> int:
    phase = position % (2 * travel)
    return phase if phase < travel else 2 * travel - phase
