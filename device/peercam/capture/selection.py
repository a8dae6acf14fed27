"""Which camera to use: the one configured, or for `source = "auto"` the best found.

Order for "auto": a Pi CSI camera (hardware H.264 where the board has it), then a
V4L2 camera (H.264 passthrough, else MJPEG, else YUYV), then the test pattern.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import av

from peercam.capture.picamera2_camera import (
    CameraLimitError,
    Picamera2Camera,
    PiCameraSettings,
    hardware_h264_available,
    import_picamera2,
)
from peercam.capture.source import Source
from peercam.capture.test_pattern import TestPatternCamera
from peercam.capture.v4l2_camera import V4L2Camera, V4L2Settings
from peercam.capture.v4l2_devices import capture_devices, probe_device
from peercam.config import Config, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraChoice:
    source: str  # "picamera2", "v4l2", "file" or "test"
    description: str  # for people: what, and which encode path
    device: str | None = None
    input_format: str | None = None
    # picamera2: the camera's position in Picamera2.global_camera_info(), which is
    # what Picamera2(n) takes (not the entry's "Num").
    position: int | None = None


def is_usb_camera(info: dict[str, Any]) -> bool:
    """libcamera lists UVC webcams among its cameras (picamera2.py:311-313 sorts them
    last); they have no lores stream or Pi encoder path, so V4L2 serves them."""
    return "/usb" in str(info.get("Id", ""))


def _picamera2_choice(config: Config, required: bool) -> CameraChoice | None:
    module = import_picamera2()
    if module is None:
        if required:
            raise ConfigError(
                "camera.source is picamera2, but picamera2 cannot be imported here "
                "(it needs Raspberry Pi OS with libcamera)"
            )
        return None
    cameras = module.Picamera2.global_camera_info()
    pi_cameras = [(n, info) for n, info in enumerate(cameras) if not is_usb_camera(info)]
    if not pi_cameras:
        if required:
            usb = ' (only a USB camera, which camera.source = "v4l2" serves)' if cameras else ""
            raise ConfigError(f"camera.source is picamera2, but no Pi camera is connected{usb}")
        return None
    if config.camera.index >= len(pi_cameras):
        raise ConfigError(
            f"camera.index {config.camera.index}: only {len(pi_cameras)} Pi camera(s) found"
        )
    position, info = pi_cameras[config.camera.index]
    if hardware_h264_available(module):
        path = "hardware H.264 (VideoCore encoder), passed through"
    else:
        path = "no hardware H.264 on this board (Pi 5): raw frames, libx264 once"
    return CameraChoice(
        "picamera2", f"Pi camera {info.get('Model', '?')}: {path}", position=position
    )


def _v4l2_choice(config: Config, required: bool) -> CameraChoice | None:
    wanted = config.camera.device
    if wanted:
        device = probe_device(wanted)
        if device is None:
            raise ConfigError(f"camera.device {wanted} is not a usable V4L2 capture device")
    else:
        devices = capture_devices()
        if not devices:
            if required:
                raise ConfigError("camera.source is v4l2, but no V4L2 capture device was found")
            return None
        device = devices[0]
    fmt: str = config.camera.input_format
    if fmt == "auto":
        fmt = device.best_format() or "yuyv"
    path = (
        "H.264 from the camera, passed through" if fmt == "h264" else f"{fmt} decoded, encoded once"
    )
    return CameraChoice("v4l2", f"{device.card} at {device.path}: {path}", device.path, fmt)


def _file_choice(config: Config) -> CameraChoice:
    path = config.camera.file
    if not path:
        raise ConfigError("camera.source is file, but camera.file is not set")
    if not os.path.isfile(path):
        raise ConfigError(f"camera.file {path} does not exist")
    try:
        with av.open(path) as container:
            codec = container.streams.video[0].codec_context.name
    except (av.FFmpegError, IndexError) as error:
        raise ConfigError(f"camera.file {path} has no readable video: {error}") from None
    if codec not in ("h264", "mjpeg"):
        raise ConfigError(f"camera.file {path} is {codec}; peercam replays H.264 or MJPEG")
    path_text = "passed through" if codec == "h264" else "decoded, encoded once"
    return CameraChoice("file", f"recorded clip {path} ({codec}, {path_text})", path, codec)


def choose_camera(config: Config) -> CameraChoice:
    source = config.camera.source
    if source == "test":
        return CameraChoice("test", "built-in test pattern, encoded once in software")
    if source == "file":
        return _file_choice(config)
    if source in ("auto", "picamera2"):
        choice = _picamera2_choice(config, required=source == "picamera2")
        if choice is not None:
            return choice
    if source in ("auto", "v4l2"):
        choice = _v4l2_choice(config, required=source == "v4l2")
        if choice is not None:
            return choice
    return CameraChoice("test", "no camera found: built-in test pattern, encoded once in software")


def build_camera(config: Config, choice: CameraChoice) -> Source[Any]:
    camera = config.camera
    width, height = camera.dimensions
    flip = camera.rotation == 180
    if choice.source == "picamera2":
        module = import_picamera2()
        assert module is not None and choice.position is not None
        settings = PiCameraSettings(
            index=choice.position,
            width=width,
            height=height,
            fps=camera.fps,
            bitrate=config.video.bitrate_kbps * 1000,
            keyframe_interval=config.video.keyframe_interval,
            hflip=camera.hflip != flip,
            vflip=camera.vflip != flip,
            lores=camera.lores_dimensions,
        )
        try:
            return Picamera2Camera(settings, module)
        except CameraLimitError as error:
            raise ConfigError(str(error)) from None
    if choice.source in ("v4l2", "file"):
        assert choice.device is not None and choice.input_format is not None
        settings_v4l2 = V4L2Settings(choice.device, choice.input_format, width, height, camera.fps)
        if choice.source == "file":
            return V4L2Camera(
                settings_v4l2,
                opener=lambda: av.open(choice.device),
                pace_by_timestamps=True,
                backoff=(0.5, 5.0),
            )
        return V4L2Camera(settings_v4l2)
    return TestPatternCamera(width, height, camera.fps)
