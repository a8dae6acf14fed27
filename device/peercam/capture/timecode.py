"""The capture-time code burned into test-pattern frames.

A row of black/white blocks across the top of the picture carries the wall-clock time
(milliseconds since the Unix epoch) at which the frame was made. A browser on the same
machine reads the blocks off the decoded picture and subtracts them from its own clock:
that is glass-to-glass latency, with no instrument but the picture itself.

Layout: `SYNC` (white, black) then `DATA_BITS` bits, most significant first; white is 1.
Blocks are 16 rows tall so they sit in whole macroblocks and survive compression.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DATA_BITS = 42  # 2**42 ms is about 139 years: wall-clock milliseconds fit
SYNC = (1, 0)
BLOCKS = len(SYNC) + DATA_BITS
ROWS = 16
WHITE = 235  # video-range luma, so decoders and canvases do not clip
BLACK = 16


def block_width(frame_width: int) -> int:
    return frame_width // (BLOCKS + 2)


def burn(luma: npt.NDArray[np.uint8], millis: int) -> None:
    """Write `millis` into the top rows of a luma plane, in place."""
    width = block_width(luma.shape[1])
    bits = list(SYNC) + [(millis >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]
    row = np.repeat(np.where(np.array(bits, dtype=bool), WHITE, BLACK).astype(np.uint8), width)
    luma[:ROWS, : row.size] = row
    luma[:ROWS, row.size :] = BLACK


def read(luma: npt.NDArray[np.uint8]) -> int | None:
    """Read the time code back from a luma plane; None when the sync blocks are missing."""
    width = block_width(luma.shape[1])
    centre_row = luma[ROWS // 2]
    samples = [int(centre_row[i * width + width // 2]) for i in range(BLOCKS)]
    bits = [1 if value > (WHITE + BLACK) // 2 else 0 for value in samples]
    if tuple(bits[: len(SYNC)]) != SYNC:
        return None
    value = 0
    for bit in bits[len(SYNC) :]:
        value = (value << 1) | bit
    return value
