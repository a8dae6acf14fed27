"""Raspberry Pi CSI cameras through picamera2, with the Pi's hardware H.264 encoder.

On boards with the VideoCore encoder (Pi 4, 3, Zero 2) the camera's H.264 comes out
of picamera2's `H264Encoder` and goes to viewers as it is: no copy of the picture
ever reaches Python. Raw frames are copied out only while a software encoder needs
them (VP8 viewers). A Pi 5 has no H.264 encoder: there the camera gives raw frames
and peercam's own libx264 (tuned for latency) encodes them once.

Opening, configuring and closing the camera block for up to a second or two on a Pi,
so they run in the camera's own driver thread, never on the event loop. picamera2 runs
threads of its own; its callbacks hand data to the event loop.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from peercam.capture.source import ThreadedSource
from peercam.capture.yuv import yuv420_frame
from peercam.media import CapturedEncoded, CapturedPreview, CapturedVideo

logger = logging.getLogger(__name__)

# picamera2 hands "baseline" to the encoder as V4L2's plain baseline profile
# (encoders/h264_encoder.py:60-71 in 0.3.38), which the SDP would have to call 42 00;
# constrained baseline is what every WebRTC decoder takes and what peercam offers for
# its software H.264 too (42 e0), so ask the hardware for exactly that.
H264_PROFILE = "constrained baseline"

# How long a new open waits for the previous close of the same camera (picamera2's
# stop_encoder/stop/close take 0.5-1 s) before trying, and failing, anyway.
CLOSE_WAIT_SECONDS = 10.0

# The VideoCore H.264 encoder's ceiling (level 4.2): 1080p at 30 fps. Heights are
# padded to whole macroblocks, so 1080 is encoded as 1088.
HW_MAX_WIDTH, HW_MAX_HEIGHT, HW_MAX_FPS = 1920, 1088, 30


class CameraLimitError(ValueError):
    """The configuration asks more than the camera's hardware can give."""


# What the camera hands the event loop: full-size frames, small ones, encoded ones.
PiCapture = CapturedVideo | CapturedPreview | CapturedEncoded


@dataclass(frozen=True)
class PiCameraSettings:
    index: int  # the camera's position in Picamera2.global_camera_info()
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


@dataclass(frozen=True)
class StreamSize:
    width: int
    height: int


def configured_size(camera: Any, stream: str) -> StreamSize:
    """The size libcamera settled on for `stream`, which may differ from the one asked
    for: picamera2 writes it back into the configuration (picamera2.py:1151-1156)."""
    width, height = camera.stream_configuration(stream)["size"]
    return StreamSize(int(width), int(height))


# libcamera lets one process hold a camera at a time (picamera2.py:580 raises "Failed
# to acquire camera" otherwise), and a close takes up to a second. One lock per camera
# index, held from Picamera2(n) to the end of close(), puts every open after the
# previous close, whichever threads run them.
_held_guard = threading.Lock()
_held: dict[int, threading.Lock] = {}


def _camera_lock(index: int) -> threading.Lock:
    with _held_guard:
        return _held.setdefault(index, threading.Lock())


@dataclass
class _OpenCamera:
    camera: Any
    encoder: Any
    main: StreamSize
    lores: StreamSize | None


class Picamera2Camera(ThreadedSource[_OpenCamera, CapturedVideo | CapturedPreview]):
    kind = "video"

    def __init__(self, settings: PiCameraSettings, picamera2: ModuleType) -> None:
        super().__init__(backoff=(0.5, 10.0))
        self.settings = settings
        self.name = f"picamera2-{settings.index}"
        self.label = f"picamera2 camera {settings.index}"
        self._module = picamera2
        self.hardware_h264 = hardware_h264_available(picamera2)
        if self.hardware_h264:
            check_hardware_limits(settings)
            self.native_codec = "h264"
        self._want_raw = False
        self._want_encoded = False
        self._want_preview = False
        self.has_preview = settings.lores is not None
        # What the camera thread opened; read by picamera2's threads and the loop.
        self._opened: _OpenCamera | None = None
        self._encoded_clock = SensorClock()
        self._raw_clock = SensorClock()
        self._cannot_force_logged = False
        self._callback_errors = 0

    def set_outputs(self, raw: bool, encoded: bool, preview: bool = False) -> None:
        # The hardware encoder runs whenever the camera does (it costs the CPU nothing);
        # these flags only decide what is copied out and handed to the loop.
        self._want_raw, self._want_encoded = raw, encoded
        self._want_preview = preview and self.has_preview

    def request_keyframe(self) -> bool:
        opened = self._opened
        if opened is None or opened.encoder is None:
            return False  # still opening: a fresh encoder starts with an IDR anyway
        force = getattr(opened.encoder, "force_key_frame", None)
        if force is None:
            if not self._cannot_force_logged:
                self._cannot_force_logged = True
                logger.warning(
                    "%s: this picamera2 cannot force a keyframe (needs 0.3.32 or later); "
                    "new viewers wait for the camera's next one (every %.1f s)",
                    self.label,
                    self.settings.keyframe_interval,
                )
            return False
        force()
        return True

    async def stop(self) -> None:
        self._want_raw = self._want_encoded = self._want_preview = False
        await super().stop()

    # The camera's driver thread.

    def _open(self) -> _OpenCamera:
        held = _camera_lock(self.settings.index)
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while not held.acquire(timeout=0.1):
            if self._stopping.is_set() or time.monotonic() > deadline:
                raise RuntimeError("the camera is still being closed")
        try:
            opened = self._open_camera()
        except BaseException:
            held.release()
            raise
        return opened

    def _open_camera(self) -> _OpenCamera:
        s = self.settings
        libcamera = importlib.import_module("libcamera")
        self._encoded_clock, self._raw_clock = SensorClock(), SensorClock()
        camera = self._module.Picamera2(s.index)
        encoder = None
        try:
            config = camera.create_video_configuration(
                main={"size": (s.width, s.height), "format": "YUV420"},
                lores={"size": s.lores, "format": "YUV420"} if s.lores else None,
                controls={"FrameRate": s.fps},
                transform=libcamera.Transform(hflip=int(s.hflip), vflip=int(s.vflip)),
            )
            camera.configure(config)
            main = configured_size(camera, "main")
            lores = configured_size(camera, "lores") if s.lores else None
            if (main.width, main.height) != (s.width, s.height):
                logger.warning(
                    "%s: libcamera gives %dx%d for the %dx%d asked for",
                    self.label, main.width, main.height, s.width, s.height,
                )  # fmt: skip
            self._opened = _OpenCamera(camera, None, main, lores)
            camera.post_callback = self._on_request
            if self.hardware_h264:
                encoders = importlib.import_module("picamera2.encoders")
                encoder = encoders.H264Encoder(
                    bitrate=s.bitrate,
                    repeat=True,  # SPS/PPS with every IDR: any viewer can start at any of them
                    iperiod=max(1, round(s.keyframe_interval * s.fps)),
                    framerate=s.fps,
                    profile=H264_PROFILE,
                )
                camera.start_encoder(encoder, self._make_output())
                self._opened = _OpenCamera(camera, encoder, main, lores)
            camera.start()
        except BaseException:
            self._opened = None
            self._release(camera, encoder)
            raise
        logger.info(
            "picamera2 camera %d: %dx%d@%d, %s", s.index, main.width, main.height, s.fps,
            "hardware H.264" if self.hardware_h264 else "no hardware H.264 (Pi 5): libx264",
        )  # fmt: skip
        return self._opened

    def _use(self, handle: _OpenCamera) -> None:
        # picamera2's own threads deliver; this one only waits to close the camera.
        self._stopping.wait()

    def _close(self, handle: _OpenCamera) -> None:
        self._opened = None
        try:
            self._release(handle.camera, handle.encoder)
        finally:
            _camera_lock(self.settings.index).release()

    @staticmethod
    def _release(camera: Any, encoder: Any) -> None:
        try:
            if encoder is not None and encoder.running:
                camera.stop_encoder(encoder)
            camera.stop()
        finally:
            camera.close()

    # picamera2's threads.

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

    def _on_encoded(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """picamera2's encoder thread: one encoded frame. An exception here would end
        that thread (encoders/v4l2_encoder.py:208-281), so none leaves."""
        try:
            self.last_item_at = time.monotonic()
            if not self._want_encoded:
                return
            seconds = (timestamp_us or 0) / 1e6
            captured_at = self._encoded_clock.to_monotonic(seconds)
            self._hand_over(CapturedEncoded("h264", bytes(data), bool(keyframe), captured_at))
        except Exception:
            self._callback_failed("an encoded frame")

    def _on_request(self, request: Any) -> None:
        """picamera2's processing thread: every completed request, called with its
        lock held (picamera2.py:1486-1494). An exception here would end that thread,
        which also feeds the encoder: raw and H.264 output would stop together."""
        try:
            self.last_item_at = time.monotonic()
            opened = self._opened
            if opened is None or not (self._want_raw or self._want_preview):
                return
            metadata = request.get_metadata()
            seconds = metadata.get("SensorTimestamp", time.monotonic_ns()) / 1e9
            captured_at = self._raw_clock.to_monotonic(seconds)
            if self._want_raw:
                with self._module.MappedArray(request, "main") as mapped:
                    frame = yuv420_frame(mapped.array, opened.main.width, opened.main.height)
                self._hand_over(CapturedVideo(frame, captured_at))
            if self._want_preview and opened.lores is not None:
                with self._module.MappedArray(request, "lores") as mapped:
                    small = yuv420_frame(mapped.array, opened.lores.width, opened.lores.height)
                self._hand_over(CapturedPreview(small, captured_at))
        except Exception:
            self._callback_failed("a camera frame")

    def _callback_failed(self, what: str) -> None:
        # Once with the traceback, then every 300th time (10 s at 30 fps): a frame
        # that cannot be handled is dropped, the next one may well be fine.
        self._callback_errors += 1
        if self._callback_errors == 1 or self._callback_errors % 300 == 0:
            logger.exception("%s: dropped %s (%d so far)", self.label, what, self._callback_errors)
