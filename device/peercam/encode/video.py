"""Software video encoders through PyAV: libx264 and libvpx tuned for live viewing."""

from __future__ import annotations

import fractions
import os
from dataclasses import dataclass

import av
from av.video.frame import PictureType

from peercam.encode.backend import EncodedChunk, EncoderBackend
from peercam.encode.codecs import BY_NAME
from peercam.media import Captured, CapturedVideo


@dataclass(frozen=True)
class VideoSettings:
    width: int
    height: int
    fps: int
    bitrate: int  # bits per second
    keyframe_interval: float  # seconds
    # libx264 only: the rate control's buffer, in seconds of the bitrate, which bounds
    # any one frame (keyframes above all) to about that much. None: x264's own choice,
    # where a keyframe may be 10 frames' worth: its burst queues on a narrow link.
    buffer_seconds: float | None = None


def h264_level(settings: VideoSettings) -> str:
    """The lowest H.264 level whose macroblock rate covers the stream."""
    macroblocks = ((settings.width + 15) // 16) * ((settings.height + 15) // 16)
    per_second = macroblocks * settings.fps
    for level, max_frame, max_rate in (
        ("31", 3600, 108_000),
        ("32", 5120, 216_000),
        ("40", 8192, 245_760),
        ("42", 8704, 522_240),
        ("50", 22_080, 589_824),
        ("51", 36_864, 983_040),
    ):
        if macroblocks <= max_frame and per_second <= max_rate:
            return level
    return "52"


def _buffer(settings: VideoSettings) -> str:
    """x264's VBV parameters for `settings.buffer_seconds`, if set."""
    if settings.buffer_seconds is None:
        return ""
    kbps = max(1, settings.bitrate // 1000)
    return f":vbv-maxrate={kbps}:vbv-bufsize={max(1, round(kbps * settings.buffer_seconds))}"


def _worker_threads(settings: VideoSettings) -> int:
    # Slice threads add no latency; more than the cores only adds switching.
    return max(1, min(os.cpu_count() or 1, 4, settings.height // 240))


class PyAVVideoEncoder(EncoderBackend):
    """`codec` is what viewers receive; `implementation` the FFmpeg encoder that makes
    it (libx264 and libvpx by default; h264_v4l2m2m is a Pi 4's hardware block)."""

    def __init__(self, codec: str, settings: VideoSettings, implementation: str = "") -> None:
        self.codec = codec
        self.settings = settings
        self.implementation = implementation or (BY_NAME[codec].encoder if codec in BY_NAME else "")
        gop = max(1, round(settings.keyframe_interval * settings.fps))
        if self.implementation not in ("libx264", "libvpx", "h264_v4l2m2m", "vp8_v4l2m2m"):
            raise ValueError(f"no software video encoder for {codec!r}")
        context = av.CodecContext.create(self.implementation, "w")
        assert isinstance(context, av.VideoCodecContext)
        # The V4L2 memory-to-memory encoders (…_v4l2m2m) take none of the options
        # below; keyframes are forced through the frame's picture type for all of them.
        if self.implementation == "libx264":
            context.options = {
                # x264's baseline is constrained baseline (no FMO/ASO), what browsers
                # offer as profile-level-id 42e0xx.
                "profile": "baseline",
                "preset": "veryfast",
                "tune": "zerolatency",
                "level": h264_level(settings),
                # repeat-headers: SPS/PPS before every IDR, so a viewer can start at any
                # keyframe. forced-idr: a requested keyframe must be an IDR, not an I-slice.
                # sliced-threads keeps zero frame delay while using more than one core.
                "x264-params": (
                    f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:"
                    "forced-idr=1:sliced-threads=1:aud=0" + _buffer(settings)
                ),
            }
        elif self.implementation == "libvpx":
            context.qmin, context.qmax = 4, 56
            context.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "error-resilient": "1",
                "auto-alt-ref": "0",
                "static-thresh": "100",
                "undershoot-pct": "95",
                "overshoot-pct": "15",
                "buf-initial-sz": "500",
                "buf-optimal-sz": "600",
                "buf-sz": "1000",
            }
        context.width, context.height = settings.width, settings.height
        context.pix_fmt = "yuv420p"
        context.framerate = fractions.Fraction(settings.fps, 1)
        context.time_base = fractions.Fraction(1, settings.fps)
        context.bit_rate = settings.bitrate
        context.gop_size = gop
        context.max_b_frames = 0
        context.thread_count = _worker_threads(settings)
        context.open()
        self._context = context
        self._pts = 0

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        assert isinstance(captured, CapturedVideo)
        frame = captured.image
        if (
            frame.width != self.settings.width
            or frame.height != self.settings.height
            or frame.format.name != "yuv420p"
        ):
            # Cameras hand out MJPEG's yuvj422p, YUYV and other sizes; the codec wants one.
            frame = frame.reformat(self.settings.width, self.settings.height, "yuv420p")
        frame.pts = self._pts
        frame.time_base = self._context.time_base
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        self._pts += 1
        return [
            EncodedChunk(bytes(packet), bool(packet.is_keyframe))
            for packet in self._context.encode(frame)
        ]

    def close(self) -> None:
        # PyAV frees the codec with its last reference; there is no close() to call.
        del self._context
