"""Turning a camera's planar YUV 4:2:0 buffer into a PyAV frame."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt


def yuv420_frame(buffer: npt.NDArray[np.uint8], width: int, height: int) -> av.VideoFrame:
    """Frame from a (height * 3/2, stride) I420 array, as cameras hand them out.

    When the stride is wider than the picture (rows padded for DMA alignment) each
    chroma row holds two of the chroma plane's rows; the padding is cut away here.
    """
    stride = buffer.shape[1]
    if stride == width:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(buffer), format="yuv420p")
    out = np.empty((height * 3 // 2, width), dtype=np.uint8)
    out[:height] = buffer[:height, :width]
    chroma = buffer[height : height * 3 // 2].reshape(-1)
    half_stride, half_width, half_height = stride // 2, width // 2, height // 2
    for plane in range(2):
        rows = chroma[plane * half_height * half_stride : (plane + 1) * half_height * half_stride]
        picked = rows.reshape(half_height, half_stride)[:, :half_width]
        out[height:].reshape(2, half_height, half_width)[plane] = picked
    return av.VideoFrame.from_ndarray(out, format="yuv420p")
