"""Finding V4L2 capture devices and what they can deliver, through the kernel's ioctls.

Only QUERYCAP and the ENUM_* ioctls are used: they read, change nothing, and work
while another program streams from the device.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import os
from dataclasses import dataclass, field

V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_M2M_MPLANE = 0x00004000
V4L2_CAP_VIDEO_M2M = 0x00008000
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_DISCRETE = 1

# The formats peercam can take, in the order it prefers them: H.264 passes through,
# MJPEG and YUYV are decoded and encoded once.
SUPPORTED = {"H264": "h264", "MJPG": "mjpeg", "YUYV": "yuyv"}


class _Capability(ctypes.Structure):
    _fields_ = [
        ("driver", ctypes.c_char * 16),
        ("card", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class _FormatDescription(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_char * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class _FrameSize(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32 * 6),  # discrete: width, height; stepwise: six values
        ("reserved", ctypes.c_uint32 * 2),
    ]


class _FrameInterval(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("interval", ctypes.c_uint32 * 6),  # discrete: numerator, denominator
        ("reserved", ctypes.c_uint32 * 2),
    ]


def _ioc(direction: int, number: int, struct: type[ctypes.Structure]) -> int:
    return (direction << 30) | (ctypes.sizeof(struct) << 16) | (ord("V") << 8) | number


_READ, _READ_WRITE = 2, 3
VIDIOC_QUERYCAP = _ioc(_READ, 0, _Capability)
VIDIOC_ENUM_FMT = _ioc(_READ_WRITE, 2, _FormatDescription)
VIDIOC_ENUM_FRAMESIZES = _ioc(_READ_WRITE, 74, _FrameSize)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_READ_WRITE, 75, _FrameInterval)


class _Control(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


VIDIOC_S_CTRL = _ioc(_READ_WRITE, 28, _Control)
V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME = 0x009909E5


def force_keyframe(path: str) -> bool:
    """Ask an encoding camera for an IDR now. V4L2 lets a second handle set controls
    while another streams; cameras without the control answer EINVAL (False)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, VIDIOC_S_CTRL, _Control(V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def fourcc(code: int) -> str:
    return code.to_bytes(4, "little").decode("ascii", "replace")


@dataclass(frozen=True)
class Mode:
    format: str  # fourcc, e.g. "MJPG"
    width: int
    height: int
    fps: tuple[float, ...]


@dataclass(frozen=True)
class CaptureDevice:
    path: str
    card: str
    driver: str
    bus: str
    modes: tuple[Mode, ...] = field(default=())

    @property
    def formats(self) -> list[str]:
        return sorted({m.format for m in self.modes}, key=_preference)

    def best_format(self) -> str | None:
        """The peercam input format to ask for: h264, mjpeg, yuyv or None."""
        usable = [f for f in self.formats if f in SUPPORTED]
        return SUPPORTED[usable[0]] if usable else None


def _preference(fmt: str) -> int:
    order = list(SUPPORTED)
    return order.index(fmt) if fmt in order else len(order)


def _enumerate(fd: int, request: int, struct: ctypes.Structure) -> bool:
    try:
        fcntl.ioctl(fd, request, struct)
    except OSError as error:
        if error.errno in (errno.EINVAL, errno.ENOTTY):
            return False  # past the last entry
        raise
    return True


def _modes(fd: int) -> list[Mode]:
    modes = []
    for format_index in range(64):
        description = _FormatDescription(index=format_index, type=V4L2_BUF_TYPE_VIDEO_CAPTURE)
        if not _enumerate(fd, VIDIOC_ENUM_FMT, description):
            break
        for size_index in range(256):
            size = _FrameSize(index=size_index, pixel_format=description.pixelformat)
            if not _enumerate(fd, VIDIOC_ENUM_FRAMESIZES, size):
                break
            if size.type != V4L2_FRMSIZE_TYPE_DISCRETE:
                # Stepwise sizes: report the largest; the driver adapts the request.
                width, height = size.size[1], size.size[3]
            else:
                width, height = size.size[0], size.size[1]
            rates = []
            for interval_index in range(64):
                interval = _FrameInterval(
                    index=interval_index,
                    pixel_format=description.pixelformat,
                    width=width,
                    height=height,
                )
                if not _enumerate(fd, VIDIOC_ENUM_FRAMEINTERVALS, interval):
                    break
                numerator, denominator = interval.interval[0], interval.interval[1]
                if interval.type == V4L2_FRMIVAL_TYPE_DISCRETE and numerator:
                    rates.append(round(denominator / numerator, 2))
            modes.append(Mode(fourcc(description.pixelformat), width, height, tuple(rates)))
            if size.type != V4L2_FRMSIZE_TYPE_DISCRETE:
                break
    return modes


def probe_device(path: str) -> CaptureDevice | None:
    """The device at `path` if it captures video in a format peercam can take."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        capability = _Capability()
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, capability)
        caps = capability.capabilities
        if caps & V4L2_CAP_DEVICE_CAPS:
            caps = capability.device_caps
        # Memory-to-memory nodes (the Pi's codecs and ISP) are not cameras.
        memory_to_memory = caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE)
        if not caps & V4L2_CAP_VIDEO_CAPTURE or memory_to_memory:
            return None
        device = CaptureDevice(
            path=path,
            card=capability.card.decode(errors="replace"),
            driver=capability.driver.decode(errors="replace"),
            bus=capability.bus_info.decode(errors="replace"),
            modes=tuple(_modes(fd)),
        )
        return device if device.best_format() else None
    except OSError:
        return None
    finally:
        os.close(fd)


def capture_devices(pattern: str = "/dev/video*") -> list[CaptureDevice]:
    found = (probe_device(path) for path in sorted(glob.glob(pattern), key=_device_number))
    return [device for device in found if device is not None]


def _device_number(path: str) -> int:
    digits = "".join(ch for ch in path if ch.isdigit())
    return int(digits) if digits else 0
