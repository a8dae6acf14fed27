"""The Pi's V4L2 H.264 encoder as picamera2 0.3.38 drives it (encoders/encoder.py,
v4l2_encoder.py, h264_encoder.py), with real libx264 doing the encoding.

What it mirrors: outputs must be `Output` objects; frames are queued by the camera's
preview thread and come out of the encoder's own polling thread, which wakes every
400 ms, so `stop()` takes up to that long; timestamps in microseconds from the first
frame; `profile` mapped as the V4L2 controls are, level 4.0 unless the macroblock rate
or bitrate needs more; `force_key_frame()` only from 0.3.32
(PICAMERA2_STANDIN_VERSION=0.3.31 takes it away).
"""

from __future__ import annotations

import errno
import fractions
import os
import queue
import threading
from typing import Any

import av
from av.video.frame import PictureType

from picamera2._log import record
from picamera2.outputs import Output

# v4l2_encoder.py:214: pollit.poll(400)
_POLL_SECONDS = 0.4
# h264_encoder.py:60-65; the SPS constraint flags each profile sends (constraint_set0
# and set1 for constrained baseline, none for plain baseline: ITU-T H.264 A.2.1).
_PROFILES = {"baseline": 0x00, "constrained baseline": 0xC0, "main": 0x00, "high": 0x00}
_X264_PROFILE = {"baseline": "baseline", "constrained baseline": "baseline", "main": "main",
                 "high": "high"}  # fmt: skip


def _failing_after() -> float:
    """PICAMERA2_STANDIN_ENCODE_FAILS_AFTER=N: the device refuses the N+1th frame."""
    return float(os.environ.get("PICAMERA2_STANDIN_ENCODE_FAILS_AFTER", "inf"))


def _version() -> tuple[int, ...]:
    return tuple(
        int(part) for part in os.environ.get("PICAMERA2_STANDIN_VERSION", "0.3.38").split(".")
    )


class Encoder:
    """encoders/encoder.py:28-380, the parts an H.264 encoder uses."""

    def __init__(self) -> None:
        self._output: list[Output] = []
        self._running = False
        self._lock = threading.Lock()
        self._output_lock = threading.Lock()
        self.firsttimestamp: int | None = None
        self.name: str | None = None
        self.width = self.height = self.stride = 0
        self.format: str | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Any:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Any) -> None:
        # encoder.py:200-222
        outputs = value if isinstance(value, list) else [value]
        if not all(isinstance(out, Output) for out in outputs):
            raise RuntimeError("Must pass Output")
        self._output = outputs

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def encode(self, stream: str, request: Any) -> None:
        with self._lock:
            if not self._running:
                return
            self._encode(stream, request)

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        # encoder.py:358-367: every output, five positional arguments.
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _timestamp(self, request: Any) -> int:
        # encoder.py:372-380: microseconds since this encoder's first frame.
        ts = int(request.get_metadata()["SensorTimestamp"] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
        return ts - self.firsttimestamp

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass

    def _encode(self, stream: str, request: Any) -> None:
        pass


class _H264Encoder(Encoder):
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
        super().__init__()
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self._queued = 0
        self._encoded: queue.Queue[tuple[bytes, bool, int]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._context: Any = None
        self._sps_flags = 0xC0
        self._level = 40

    def _start(self) -> None:
        # h264_encoder.py:56-101
        profile = "constrained baseline"
        if self.profile:
            if not isinstance(self.profile, str):
                raise RuntimeError("Profile should be a string value")
            profile = self.profile.lower()
            if profile not in _PROFILES:
                raise RuntimeError("Profile " + self.profile + " not recognised")
        self._sps_flags = _PROFILES[profile]
        self._level = 40
        if self.framerate is not None:
            per_second = ((self.width + 15) // 16) * ((self.height + 15) // 16) * self.framerate
            if per_second > 245760:
                self._level = 42
        if self.bitrate is not None and self.bitrate > 10_000_000 and self._level == 40:
            self._level = 41
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = self.width, self.height
        context.pix_fmt = "yuv420p"
        fps = round(self.framerate or 30)
        context.framerate = fractions.Fraction(fps, 1)
        context.time_base = fractions.Fraction(1, fps)
        context.bit_rate = self.bitrate or 2_000_000
        gop = self.iperiod or 60
        context.options = {
            "profile": _X264_PROFILE[profile],
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:forced-idr=1:"
            f"repeat-headers={1 if self.repeat else 0}",
        }
        context.open()
        self._context = context
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        # v4l2_encoder.py:164-165: joins the polling thread, which notices within 400 ms.
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _encode(self, stream: str, request: Any) -> None:
        # v4l2_encoder.py:283-331: the frame goes to the device, which encodes it on
        # its own; the keyframe request applies to the next frame queued. libx264
        # stands in for the device here, so the polling thread, like the real one,
        # spends its time waiting.
        self._queued += 1
        if self._queued > _failing_after():
            # v4l2_encoder.py:330: VIDIOC_QBUF failing raises out of the preview thread.
            record("encode failed")
            raise OSError(errno.EIO, "Input/output error")
        picture = request.picture
        if self._forcing():
            picture.pict_type = PictureType.I
        timestamp_us = self._timestamp(request)
        for packet in self._context.encode(picture):
            self._encoded.put((bytes(packet), bool(packet.is_keyframe), timestamp_us))

    def _forcing(self) -> bool:
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            return True
        return False

    def _poll(self) -> None:
        # v4l2_encoder.py:208-226: wait up to 400 ms for the device; once stopped,
        # leave when a wait brings nothing.
        while self._running or not self._encoded.empty():
            try:
                data, keyframe, timestamp_us = self._encoded.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self._running:
                    break
                continue
            if keyframe:
                record("keyframe_out")
            self.outputframe(self._as_the_pi_sends(data), keyframe, timestamp_us)

    def _as_the_pi_sends(self, data: bytes) -> bytes:
        """The SPS's constraint flags and level as the VideoCore encoder writes them for
        the profile and level chosen (x264 always writes its own)."""
        position = data.find(b"\x00\x00\x01\x67")
        if position < 0:
            return data
        edited = bytearray(data)
        edited[position + 5] = self._sps_flags
        edited[position + 6] = self._level
        return bytes(edited)


class _H264EncoderWithForcedKeyframes(_H264Encoder):
    def force_key_frame(self) -> None:
        # h264_encoder.py:124-126, since 0.3.32
        record("force_key_frame")
        self._key_frames_requested += 1


H264Encoder = _H264EncoderWithForcedKeyframes if _version() >= (0, 3, 32) else _H264Encoder
