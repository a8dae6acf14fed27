"""Fixtures for tests on a real Raspberry Pi; each skips with its reason elsewhere."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from peercam.capture.picamera2_camera import hardware_h264_available, import_picamera2
from peercam.capture.v4l2_devices import CaptureDevice, capture_devices


@pytest.fixture(scope="session")
def picamera2_module() -> ModuleType:
    module = import_picamera2()
    if module is None:
        pytest.skip("picamera2 cannot be imported: not Raspberry Pi OS with libcamera")
    if not module.Picamera2.global_camera_info():
        pytest.skip("no Pi camera connected")
    if "standins" in str(getattr(module, "__file__", "")):
        pytest.skip("the picamera2 stand-in is on the path, not the real module")
    return module


@pytest.fixture(scope="session")
def hardware_encoder(picamera2_module: ModuleType) -> ModuleType:
    if not hardware_h264_available(picamera2_module):
        pytest.skip("this board has no hardware H.264 encoder (Pi 5)")
    return picamera2_module


@pytest.fixture(scope="session")
def usb_camera() -> CaptureDevice:
    devices = [d for d in capture_devices() if d.bus.startswith("usb")]
    if not devices:
        pytest.skip("no USB V4L2 camera connected")
    return devices[0]


def usb_authorized_file(device: CaptureDevice) -> Path:
    """The sysfs switch that disconnects the camera's USB device, as an unplug does."""
    node = Path("/sys/class/video4linux") / Path(device.path).name / "device"
    for parent in [node.resolve(), *node.resolve().parents]:
        candidate = parent / "authorized"
        if candidate.exists() and (parent / "idVendor").exists():
            return candidate
    pytest.skip(f"cannot find the USB device behind {device.path}")


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to de-authorize the USB device)")
