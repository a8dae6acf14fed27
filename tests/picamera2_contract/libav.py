"""picamera2's own libx264 encoder, to stand in for the Pi 4's hardware one here.

On a Pi 5 the package itself uses LibavH264Encoder as its H264Encoder
(encoders/__init__.py:15-18): same constructor keywords, same Output calls, real
H.264 through PyAV. The Pi 4's V4L2 encoder needs /dev/video11 (v4l2_encoder.py:54).

One repair: picamera2 0.3.38 forces a keyframe with `frame.pict_type = "I"`
(libav_h264_encoder.py:160-162), which PyAV 14 and later refuse (they take only a
PictureType), so there a keyframe request would raise in picamera2's processing
thread and end it. Where the installed PyAV refuses names, the encoder made here
hands frames to PyAV through a wrapper that turns the name into the PictureType,
nothing else."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import av
import numpy as np


def _pyav_takes_picture_type_names() -> bool:
    frame = av.VideoFrame.from_ndarray(np.zeros((2, 2, 3), np.uint8), format="rgb24")
    try:
        frame.pict_type = "I"  # type: ignore[assignment]
    except TypeError:
        return False
    return True


class _FrameTakingNames:
    """A PyAV frame whose pict_type may also be set by name."""

    def __init__(self, frame: av.VideoFrame) -> None:
        object.__setattr__(self, "frame", frame)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "pict_type" and isinstance(value, str):
            value = av.video.frame.PictureType[value]
        setattr(self.frame, name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "frame"), name)


class _VideoFrames:
    @staticmethod
    def from_numpy_buffer(*args: Any, **kwargs: Any) -> _FrameTakingNames:
        return _FrameTakingNames(av.VideoFrame.from_numpy_buffer(*args, **kwargs))


class _PyAV:
    """PyAV as libav_h264_encoder.py sees it, but for the frames it makes."""

    VideoFrame = _VideoFrames

    def __getattr__(self, name: str) -> Any:
        return getattr(av, name)


class _Stream:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def encode(self, frame: Any = None) -> Any:
        if isinstance(frame, _FrameTakingNames):
            frame = object.__getattribute__(frame, "frame")
        return self._stream.encode(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def libav_h264_encoder(picamera2: ModuleType) -> Callable[..., Any]:
    """A constructor to put in place of picamera2.encoders.H264Encoder."""
    make = picamera2.encoders.LibavH264Encoder
    if _pyav_takes_picture_type_names():
        return make  # type: ignore[no-any-return]
    module = sys.modules["picamera2.encoders.libav_h264_encoder"]

    def construct(*args: Any, **kwargs: Any) -> Any:
        encoder = make(*args, **kwargs)
        started = encoder._start

        def start() -> None:
            started()
            encoder._stream = _Stream(encoder._stream)
            # After __init__, whose `global av; import av` sets this name
            # (libav_h264_encoder.py:19-21).
            module.av = _PyAV()  # type: ignore[attr-defined]

        encoder._start = start
        return encoder

    return construct
