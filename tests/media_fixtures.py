"""Recorded clips for the camera tests, made with real encoders from the test pattern."""

from __future__ import annotations

import fractions
import time
from pathlib import Path

import av

from peercam.capture.test_pattern import TestPatternCamera
from peercam.h264_bitstream import PPS, SPS, START_CODE, nal_type, nal_units


def h264_clip(
    path: Path, width: int, height: int, fps: int, seconds: float, gop: int,
    repeat_headers: bool = False,
) -> Path:  # fmt: skip
    """An Annex-B H.264 elementary stream, as a USB H.264 camera delivers it.

    With `repeat_headers` off, SPS and PPS appear once, before the first IDR only,
    as many cameras send them.
    """
    context = av.CodecContext.create("libx264", "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, fps)
    context.framerate = fractions.Fraction(fps, 1)
    context.bit_rate = 800_000
    context.options = {
        "profile": "baseline",
        "tune": "zerolatency",
        # Headers are always asked for and stripped below: with repeat-headers=0
        # x264 would put them nowhere (no global header is set on a bare context).
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1",
    }
    headers_written = False
    camera = TestPatternCamera(width, height, fps)
    with path.open("wb") as out:
        for index in range(round(seconds * fps)):
            frame = camera._capture(time.monotonic()).image
            frame.pts, frame.time_base = index, context.time_base
            for packet in context.encode(frame):
                data = bytes(packet)
                if headers_written and not repeat_headers:
                    data = _without_parameter_sets(data)
                headers_written = True
                out.write(data)
    return path


def _without_parameter_sets(access_unit: bytes) -> bytes:
    kept = [n for n in nal_units(access_unit) if n and nal_type(n) not in (SPS, PPS)]
    return b"".join(START_CODE + n for n in kept)


def mjpeg_clip(path: Path, width: int, height: int, fps: int, seconds: float) -> Path:
    """MJPEG in Matroska, timestamped: the frames a MJPEG webcam delivers."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj422p"
        camera = TestPatternCamera(width, height, fps)
        for index in range(round(seconds * fps)):
            frame = camera._capture(time.monotonic()).image.reformat(format="yuvj422p")
            frame.pts, frame.time_base = index, fractions.Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
