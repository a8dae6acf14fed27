"""A "hardware" H.264 encoder made of real libx264, driven like picamera2's."""

from __future__ import annotations

import fractions
import threading
from typing import Any

import av
from av.video.frame import PictureType

from picamera2._log import record


class H264Encoder:
    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.profile = profile
        self.output: Any = None
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self._context: Any = None
        self._lock = threading.Lock()
        self._first_timestamp: int | None = None

    def force_key_frame(self) -> None:
        record("force_key_frame")
        self._key_frames_requested += 1

    def _open(self, width: int, height: int) -> None:
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        fps = int(self.framerate or 30)
        context.framerate = fractions.Fraction(fps, 1)
        context.time_base = fractions.Fraction(1, fps)
        context.bit_rate = self.bitrate or 2_000_000
        gop = self.iperiod or 60
        context.options = {
            "profile": "baseline",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:forced-idr=1:"
            f"repeat-headers={1 if self.repeat else 0}",
        }
        context.open()
        self._context = context
        self._first_timestamp = None

    def _encode(self, frame: av.VideoFrame, sensor_timestamp_ns: int) -> None:
        """The camera thread hands each main-stream frame here, as libcamera would."""
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            frame.pict_type = PictureType.I
        timestamp_us = sensor_timestamp_ns // 1000
        if self._first_timestamp is None:
            self._first_timestamp = timestamp_us
        for packet in self._context.encode(frame):
            if packet.is_keyframe:
                record("keyframe_out")
            if self.output is not None:
                self.output.outputframe(
                    bytes(packet), bool(packet.is_keyframe), timestamp_us - self._first_timestamp
                )
