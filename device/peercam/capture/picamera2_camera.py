"""Raspberry Pi CSI cameras through picamera2, with the Pi's hardware H.264 encoder.

On boards with the VideoCore encoder (Pi 4, 3, Zero 2) the camera's H.264 comes out
of picamera2's `H264Encoder` and goes to viewers as it is: no copy of the picture
ever reaches Python. Raw frames are copied out only while a software encoder needs
them (VP8 viewers). A Pi 5 has no H.264 encoder: there the camera gives raw frames
and peercam's own libx264 (tuned for latency) encodes them once.

picamera2 runs its own threads; its callbacks hand data to the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from peercam.capture.source import Source
from peercam.capture.yuv import yuv420_frame
from peercam.media import CapturedEncoded, CapturedPreview, CapturedVideo

logger = logging.getLogger(__name__)

# The VideoCore H.264 encoder's ceiling (level 4.2): 1080p at 30 fps. Heights are
# padded to whole macroblocks, so 1080 is encoded as 1088.
HW_MAX_WIDTH, HW_MAX_HEIGHT, HW_MAX_FPS = 1920, 1088, 30


class CameraLimitError(ValueError):
    """The configuration asks more than the camera's hardware can give."""


# What the camera hands the event loop: full-size frames, small ones, encoded ones.
PiCapture = CapturedVideo | CapturedPreview | CapturedEncoded


@dataclass(frozen=True)
class PiCameraSettings:
    index: int
    width: int
    height: int
    fps: int
    bitrate: int
    keyframe_interval: float
    hflip: bool = False
    vflip: bool = False
    lores: tuple[int, int] | None = (320, 240)


def import_picamera2() -> ModuleType | None:
    """picamera2, or None where it cannot be imported (anything but Raspberry Pi OS)."""
    try:
        return importlib.import_module("picamera2")
    except Exception:  # ImportError, or libcamera failing to load inside it
        return None


def hardware_h264_available(picamera2: ModuleType) -> bool:
    platform = importlib.import_module("picamera2.platform")
    return bool(platform.get_platform() == platform.Platform.VC4)


def check_hardware_limits(settings: PiCameraSettings) -> None:
    padded_height = (settings.height + 15) // 16 * 16
    if settings.width > HW_MAX_WIDTH or padded_height > HW_MAX_HEIGHT:
        raise CameraLimitError(
            f"camera.size {settings.width}x{settings.height} is beyond the Pi hardware H.264 "
            f"encoder's limit of 1920x1080 (level 4.2)"
        )
    if settings.fps > HW_MAX_FPS:
        raise CameraLimitError(
            f"camera.fps {settings.fps} is beyond the Pi hardware H.264 encoder's limit of "
            f"{HW_MAX_FPS} fps (1080p30, level 4.2)"
        )


class SensorClock:
    """Maps a sensor's timestamps onto time.monotonic(), the microphone's clock.

    Sensor timestamps keep the frames' spacing exact; the offset is fixed at the first
    frame, so the mapped times keep that spacing."""

    def __init__(self) -> None:
        self._offset: float | None = None

    def to_monotonic(self, seconds: float) -> float:
        if self._offset is None:
            self._offset = time.monotonic() - seconds
        return seconds + self._offset


class Picamera2Camera(Source[CapturedVideo | CapturedPreview]):
    kind = "video"

    def __init__(self, settings: PiCameraSettings, picamera2: ModuleType) -> None:
        self.settings = settings
        self.name = f"picamera2-{settings.index}"
        self._module = picamera2
        self.hardware_h264 = hardware_h264_available(picamera2)
        if self.hardware_h264:
            check_hardware_limits(settings)
            self.native_codec = "h264"
        self._camera: Any = None
        self._encoder: Any = None
        self._want_raw = False
        self._want_encoded = False
        self._want_preview = False
        self.has_preview = settings.lores is not None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: Callable[[CapturedVideo | CapturedPreview | CapturedEncoded], None] | None = (
            None
        )
        self._lock = threading.Lock()
        self._encoded_clock = SensorClock()
        self._raw_clock = SensorClock()

    @property
    def running(self) -> bool:
        return self._camera is not None

    def set_outputs(self, raw: bool, encoded: bool, preview: bool = False) -> None:
        # The hardware encoder runs whenever the camera does (it costs the CPU nothing);
        # these flags only decide what is copied out and handed to the loop.
        self._want_raw, self._want_encoded = raw, encoded
        self._want_preview = preview and self.has_preview

    def request_keyframe(self) -> bool:
        encoder = self._encoder
        if encoder is None:
            return False
        encoder.force_key_frame()
        return True

    def start(
        self, sink: Callable[[CapturedVideo | CapturedPreview | CapturedEncoded], None]
    ) -> None:
        if self._camera is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._encoded_clock, self._raw_clock = SensorClock(), SensorClock()
        s = self.settings
        module = self._module
        libcamera = importlib.import_module("libcamera")
        camera = module.Picamera2(s.index)
        try:
            config = camera.create_video_configuration(
                main={"size": (s.width, s.height), "format": "YUV420"},
                lores={"size": s.lores, "format": "YUV420"} if s.lores else None,
                controls={"FrameRate": s.fps},
                transform=libcamera.Transform(hflip=int(s.hflip), vflip=int(s.vflip)),
            )
            camera.configure(config)
            camera.post_callback = self._on_request
            if self.hardware_h264:
                encoders = importlib.import_module("picamera2.encoders")
                self._encoder = encoders.H264Encoder(
                    bitrate=s.bitrate,
                    repeat=True,  # SPS/PPS with every IDR: any viewer can start at any of them
                    iperiod=max(1, round(s.keyframe_interval * s.fps)),
                    framerate=s.fps,
                    profile="baseline",
                )
                camera.start_encoder(self._encoder, self._make_output())
            camera.start()
        except Exception:
            camera.close()
            self._encoder = None
            raise
        self._camera = camera
        logger.info(
            "picamera2 camera %d: %dx%d@%d, %s", s.index, s.width, s.height, s.fps,
            "hardware H.264" if self.hardware_h264 else "no hardware H.264 (Pi 5): libx264",
        )  # fmt: skip

    def _make_output(self) -> Any:
        base = importlib.import_module("picamera2.outputs").Output
        camera = self

        class ViewerOutput(base):  # type: ignore[misc, valid-type]
            def outputframe(
                self,
                frame: bytes,
                keyframe: bool = True,
                timestamp: int | None = None,
                packet: Any = None,
                audio: bool = False,
            ) -> None:
                camera._on_encoded(frame, keyframe, timestamp)

        return ViewerOutput()

    def _hand_over(self, item: PiCapture) -> None:
        loop, sink = self._loop, self._sink
        if loop is None or sink is None:
            return
        try:
            loop.call_soon_threadsafe(sink, item)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _on_encoded(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """picamera2's encoder thread: one encoded frame."""
        if not self._want_encoded:
            return
        seconds = (timestamp_us or 0) / 1e6
        captured_at = self._encoded_clock.to_monotonic(seconds)
        self._hand_over(CapturedEncoded("h264", bytes(data), bool(keyframe), captured_at))

    def _on_request(self, request: Any) -> None:
        """picamera2's camera thread: every completed request."""
        if not (self._want_raw or self._want_preview):
            return
        s = self.settings
        metadata = request.get_metadata()
        seconds = metadata.get("SensorTimestamp", time.monotonic_ns()) / 1e9
        captured_at = self._raw_clock.to_monotonic(seconds)
        if self._want_raw:
            with self._module.MappedArray(request, "main") as mapped:
                frame = yuv420_frame(mapped.array, s.width, s.height)
            self._hand_over(CapturedVideo(frame, captured_at))
        if self._want_preview and s.lores is not None:
            with self._module.MappedArray(request, "lores") as mapped:
                small = yuv420_frame(mapped.array, *s.lores)
            self._hand_over(CapturedPreview(small, captured_at))

    async def stop(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        self._want_raw = self._want_encoded = self._want_preview = False
        await asyncio.to_thread(self._close, camera)

    def _close(self, camera: Any) -> None:
        try:
            if self._encoder is not None:
                camera.stop_encoder(self._encoder)
            camera.stop()
        finally:
            camera.close()
            self._encoder = None
