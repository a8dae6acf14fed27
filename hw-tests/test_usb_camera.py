"""A USB camera on a real board: capture, and a hot unplug the daemon survives."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conftest import usb_authorized_file
from peercam.capture.v4l2_camera import V4L2Camera, V4L2Settings
from peercam.capture.v4l2_devices import CaptureDevice
from peercam.media import CapturedEncoded, CapturedVideo

pytestmark = pytest.mark.hardware


async def test_usb_camera_survives_a_hot_unplug(usb_camera: CaptureDevice, root: None) -> None:
    fmt = usb_camera.best_format()
    assert fmt is not None
    camera = V4L2Camera(V4L2Settings(usb_camera.path, fmt, 640, 480, 30), backoff=(0.5, 2.0))
    arrivals: list[float] = []

    def sink(item: CapturedVideo | CapturedEncoded) -> None:
        arrivals.append(time.monotonic())

    camera.set_outputs(raw=fmt != "h264", encoded=fmt == "h264")
    camera.start(sink)
    switch: Path = usb_authorized_file(usb_camera)
    try:
        await asyncio.sleep(3)
        assert len(arrivals) > 30
        await asyncio.to_thread(switch.write_text, "0")  # gone, as if unplugged
        await asyncio.sleep(3)
        gone_at = len(arrivals)
        await asyncio.to_thread(switch.write_text, "1")  # and plugged back in
        await asyncio.sleep(8)
        print(f"frames before/after the unplug: {gone_at} / {len(arrivals) - gone_at}")
        assert len(arrivals) - gone_at > 30
    finally:
        await asyncio.to_thread(switch.write_text, "1")
        await camera.stop()
