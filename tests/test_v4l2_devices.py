"""The ioctl structures must match the kernel's, byte for byte: the request numbers
encode each structure's size, so they are checked against linux/videodev2.h's."""

from __future__ import annotations

from pathlib import Path

from peercam.capture import v4l2_devices as v4l2


def test_ioctl_numbers_match_the_kernel_headers() -> None:
    assert v4l2.VIDIOC_QUERYCAP == 0x80685600
    assert v4l2.VIDIOC_ENUM_FMT == 0xC0405602
    assert v4l2.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert v4l2.VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B
    assert v4l2.VIDIOC_S_CTRL == 0xC008561C


def test_forcing_a_keyframe_on_something_that_is_no_camera_fails_cleanly(tmp_path: Path) -> None:
    assert v4l2.force_keyframe("/dev/null") is False
    assert v4l2.force_keyframe(str(tmp_path / "video7")) is False


def test_fourcc_and_format_preference() -> None:
    assert v4l2.fourcc(0x34363248) == "H264"
    device = v4l2.CaptureDevice(
        "/dev/video0", "cam", "uvcvideo", "usb-1",
        (v4l2.Mode("YUYV", 640, 480, (30.0,)), v4l2.Mode("MJPG", 1280, 720, (30.0,))),
    )  # fmt: skip
    assert device.formats == ["MJPG", "YUYV"]
    assert device.best_format() == "mjpeg"
    with_h264 = v4l2.CaptureDevice(
        "/dev/video2",
        "cam",
        "uvcvideo",
        "usb-1",
        (*device.modes, v4l2.Mode("H264", 1920, 1080, ())),
    )
    assert with_h264.best_format() == "h264"


def test_things_that_are_not_capture_devices_are_skipped(tmp_path: Path) -> None:
    assert v4l2.probe_device("/dev/null") is None  # no V4L2 ioctls
    assert v4l2.probe_device(str(tmp_path / "video0")) is None  # missing
    assert v4l2.capture_devices(str(tmp_path / "video*")) == []
