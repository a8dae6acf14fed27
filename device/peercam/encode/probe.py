"""Which encoders work on this board: found by encoding frames, not by their names.

FFmpeg lists h264_v4l2m2m on every build; only on a board with the hardware (a Pi 4)
does it open and produce packets, and only a real encode tells the two apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import av
import numpy as np

from peercam.capture.test_pattern import TestPatternCamera
from peercam.encode.audio import OpusAudioEncoder
from peercam.encode.backend import EncoderBackend
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.media import CapturedAudio

VIDEO_IMPLEMENTATIONS = {
    "libx264": "h264",
    "libvpx": "vp8",
    "h264_v4l2m2m": "h264",
    "vp8_v4l2m2m": "vp8",
}


@dataclass(frozen=True)
class ProbeResult:
    implementation: str
    codec: str
    works: bool
    detail: str  # CPU ms per frame when it works, the error when it does not


def probe_video(
    implementation: str, width: int = 640, height: int = 480, frames: int = 8
) -> ProbeResult:
    codec = VIDEO_IMPLEMENTATIONS[implementation]
    try:
        encoder = PyAVVideoEncoder(
            codec, VideoSettings(width, height, 30, 1_000_000, 1.0), implementation
        )
        camera = TestPatternCamera(width, height, 30)
        started = time.process_time()
        produced = 0
        for index in range(frames):
            produced += len(encoder.encode(camera._capture(time.monotonic()), index == 0))
        cost = (time.process_time() - started) / frames * 1000
        encoder.close()
    except (av.FFmpegError, OSError, ValueError) as error:
        return ProbeResult(implementation, codec, False, " ".join(str(error).split())[:160])
    if not produced:
        return ProbeResult(implementation, codec, False, "opened but produced no packets")
    return ProbeResult(implementation, codec, True, f"{cost:.1f} ms CPU per {width}x{height} frame")


def probe_opus() -> ProbeResult:
    try:
        encoder: EncoderBackend = OpusAudioEncoder(32_000)
        samples = np.zeros((1, 960), dtype=np.int16)
        produced = 0
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = 48_000
            produced += len(encoder.encode(CapturedAudio(frame, 0.0), False))
        encoder.close()
    except (av.FFmpegError, OSError, ValueError) as error:
        return ProbeResult("libopus", "opus", False, str(error)[:160])
    return ProbeResult("libopus", "opus", produced > 0, "encodes 20 ms frames")


def choose_h264_implementation(preference: str, width: int, height: int) -> tuple[str, str]:
    """(implementation, why) for software H.264 under the config's `h264_encoder`."""
    if preference != "auto":
        return preference, "as configured"
    hardware = probe_video("h264_v4l2m2m", width, height, frames=4)
    if hardware.works:
        return "h264_v4l2m2m", "the board's V4L2 hardware encoder works"
    return "libx264", f"no working hardware encoder ({hardware.detail})"
