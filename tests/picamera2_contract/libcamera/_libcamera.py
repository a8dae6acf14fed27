"""A fake of libcamera's C++ binding (`_libcamera`, built with pybind11), just large
enough for the real picamera2 0.3.38 to open, configure, start and stop cameras.

Every behaviour names the libcamera source it mirrors (raspberrypi/libcamera,
src/py/libcamera/py_main.cpp and py_camera_manager.cpp for the binding,
src/libcamera/camera.cpp for the camera's state machine,
src/libcamera/pipeline/rpi/{common/pipeline_base.cpp,vc4/vc4.cpp} for the Raspberry
Pi pipeline) or the Pi 4 ISP's kernel driver (raspberrypi/linux,
drivers/staging/vc04_services/bcm2835-isp/). What is not modelled is listed in
tests/picamera2_contract/README.md.

The part below "The rig" is not libcamera's: it is how a test says which cameras are
attached and reads what reached them.
"""

from __future__ import annotations

import copy
import errno
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Camera",
    "CameraConfiguration",
    "CameraManager",
    "ColorSpace",
    "ControlId",
    "ControlInfo",
    "ControlType",
    "FrameBuffer",
    "FrameMetadata",
    "Orientation",
    "PixelFormat",
    "Rectangle",
    "Request",
    "SensorConfiguration",
    "Size",
    "Stream",
    "StreamConfiguration",
    "StreamFormats",
    "StreamRole",
    "Transform",
    "controls",
    "properties",
]


def _error(message: str, code: int) -> RuntimeError:
    # pybind11 turns the binding's std::system_error(code, generic_category(), message)
    # into a RuntimeError reading "<message>: <strerror>" (py_main.cpp:153-239).
    return RuntimeError(f"{message}: {os.strerror(code)}")


# Geometry, formats and transforms.


class Size:
    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width, self.height = int(width), int(height)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    def __hash__(self) -> int:
        return hash((self.width, self.height))

    def __repr__(self) -> str:
        return f"libcamera.Size({self.width}, {self.height})"


class Rectangle:
    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0) -> None:
        self.x, self.y, self.width, self.height = x, y, width, height

    def __repr__(self) -> str:
        return f"libcamera.Rectangle({self.x}, {self.y}, {self.width}, {self.height})"


class PixelFormat:
    def __init__(self, name: str = "") -> None:
        self._name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PixelFormat) and self._name == other._name

    def __hash__(self) -> int:
        return hash(self._name)

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"libcamera.PixelFormat('{self._name}')"


class Transform:
    # py_transform.cpp:25-41: Transform(rotation=0, hflip=False, vflip=False,
    # transpose=False), or a copy of another Transform.
    hflip: bool
    vflip: bool
    transpose: bool

    def __init__(
        self,
        rotation: int | Transform = 0,
        hflip: bool = False,
        vflip: bool = False,
        transpose: bool = False,
    ) -> None:
        if isinstance(rotation, Transform):
            hflip, vflip, transpose = rotation.hflip, rotation.vflip, rotation.transpose
        elif rotation != 0:
            raise ValueError("the fake Transform takes rotation 0 only")
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __str__(self) -> str:
        flips = f"hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}"
        return f"<libcamera.Transform {flips}>"


class Orientation(Enum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate270Mirror = 7
    Rotate90 = 8


class ColorSpace:
    # py_color_space.cpp:20-70; the four presets as libcamera's color_space.cpp:140-186.
    class Primaries(Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(Enum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(Enum):
        Full = 0
        Limited = 1

    primaries: ColorSpace.Primaries
    transferFunction: ColorSpace.TransferFunction
    ycbcrEncoding: ColorSpace.YcbcrEncoding
    range: ColorSpace.Range

    def __init__(
        self,
        primaries: ColorSpace.Primaries | ColorSpace,
        transferFunction: ColorSpace.TransferFunction | None = None,
        ycbcrEncoding: ColorSpace.YcbcrEncoding | None = None,
        range: ColorSpace.Range | None = None,
    ) -> None:
        if isinstance(primaries, ColorSpace):
            other = primaries
            self.primaries, self.transferFunction = other.primaries, other.transferFunction
            self.ycbcrEncoding, self.range = other.ycbcrEncoding, other.range
            return
        assert transferFunction is not None and ycbcrEncoding is not None and range is not None
        self.primaries, self.transferFunction = primaries, transferFunction
        self.ycbcrEncoding, self.range = ycbcrEncoding, range

    def __str__(self) -> str:
        return (
            f"<libcamera.ColorSpace {self.primaries.name}/{self.transferFunction.name}/"
            f"{self.ycbcrEncoding.name}/{self.range.name}>"
        )

    @staticmethod
    def Raw() -> ColorSpace:
        cs = ColorSpace
        return cs(
            cs.Primaries.Raw, cs.TransferFunction.Linear, cs.YcbcrEncoding.Null, cs.Range.Full
        )

    @staticmethod
    def Sycc() -> ColorSpace:
        cs = ColorSpace
        return cs(
            cs.Primaries.Rec709, cs.TransferFunction.Srgb, cs.YcbcrEncoding.Rec601, cs.Range.Full
        )

    @staticmethod
    def Smpte170m() -> ColorSpace:
        cs = ColorSpace
        return cs(
            cs.Primaries.Smpte170m,
            cs.TransferFunction.Rec709,
            cs.YcbcrEncoding.Rec601,
            cs.Range.Limited,
        )

    @staticmethod
    def Rec709() -> ColorSpace:
        cs = ColorSpace
        return cs(
            cs.Primaries.Rec709,
            cs.TransferFunction.Rec709,
            cs.YcbcrEncoding.Rec709,
            cs.Range.Limited,
        )


class StreamRole(Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


# Controls and properties.


class ControlType(Enum):
    Bool = 1
    Byte = 2
    Integer32 = 4
    Integer64 = 5
    Float = 6
    String = 7
    Rectangle = 8
    Size = 9


class ControlId:
    def __init__(self, numeric: int, name: str, kind: ControlType) -> None:
        self.id, self.name, self.type = numeric, name, kind

    def __repr__(self) -> str:
        return f"libcamera.ControlId({self.id}, {self.name}, {self.type})"


class ControlInfo:
    def __init__(self, minimum: Any, maximum: Any, default: Any = None) -> None:
        self.min, self.max, self.default = minimum, maximum, default


class controls:  # the binding's submodule libcamera.controls
    ExposureTime = ControlId(1, "ExposureTime", ControlType.Integer32)
    ExposureTimeMode = ControlId(2, "ExposureTimeMode", ControlType.Integer32)
    AnalogueGain = ControlId(3, "AnalogueGain", ControlType.Float)
    AnalogueGainMode = ControlId(4, "AnalogueGainMode", ControlType.Integer32)
    FrameDurationLimits = ControlId(5, "FrameDurationLimits", ControlType.Integer64)
    FrameDuration = ControlId(6, "FrameDuration", ControlType.Integer64)
    SensorTimestamp = ControlId(7, "SensorTimestamp", ControlType.Integer64)
    ScalerCrop = ControlId(8, "ScalerCrop", ControlType.Rectangle)
    Brightness = ControlId(9, "Brightness", ControlType.Float)

    class draft:
        NoiseReductionMode = ControlId(10, "NoiseReductionMode", ControlType.Integer32)

        class NoiseReductionModeEnum(IntEnum):
            Off = 0
            Fast = 1
            HighQuality = 2
            Minimal = 3
            ZSL = 4


class properties:  # the binding's submodule libcamera.properties
    Location = ControlId(1, "Location", ControlType.Integer32)
    Rotation = ControlId(2, "Rotation", ControlType.Integer32)
    Model = ControlId(3, "Model", ControlType.String)
    PixelArraySize = ControlId(4, "PixelArraySize", ControlType.Size)
    ColorFilterArrangement = ControlId(5, "ColorFilterArrangement", ControlType.Integer32)

    class draft:
        class ColorFilterArrangementEnum(IntEnum):
            RGGB = 0
            GRBG = 1
            GBRG = 2
            BGGR = 3
            RGB = 4
            MONO = 5


# Streams and configurations.


class Stream:
    def __init__(self, name: str) -> None:
        self.name = name
        # Camera::configure() stores a copy of the stream's final configuration here
        # (camera.cpp:1233).
        self.configuration: StreamConfiguration | None = None

    def __repr__(self) -> str:
        return f"<libcamera.Stream {self.name}>"


class StreamFormats:
    def __init__(self, sizes: Mapping[str, Sequence[Size]]) -> None:
        self._sizes = {name: list(found) for name, found in sizes.items()}

    @property
    def pixel_formats(self) -> list[PixelFormat]:
        return [PixelFormat(name) for name in self._sizes]

    def sizes(self, pixel_format: PixelFormat) -> list[Size]:
        return list(self._sizes.get(str(pixel_format), []))


class StreamConfiguration:
    def __init__(
        self,
        pixel_format: str,
        size: Size,
        buffer_count: int,
        color_space: ColorSpace | None,
        formats: StreamFormats,
    ) -> None:
        self.pixel_format = PixelFormat(pixel_format)
        self.size = size
        self.buffer_count = buffer_count
        self.color_space = color_space
        self.stride = 0
        self.frame_size = 0
        self.formats = formats
        self.stream: Stream | None = None


class SensorConfiguration:
    def __init__(self) -> None:
        self.bit_depth = 0
        self.output_size = Size()


class CameraConfiguration:
    class Status(Enum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera: Camera, streams: list[StreamConfiguration]) -> None:
        self._camera = camera
        self._streams = streams
        self.orientation = Orientation.Rotate0
        self.sensor_config: SensorConfiguration | None = None

    def at(self, index: int) -> StreamConfiguration:
        return self._streams[index]

    def __iter__(self) -> Iterator[StreamConfiguration]:
        return iter(self._streams)

    def __len__(self) -> int:
        return len(self._streams)

    def validate(self) -> CameraConfiguration.Status:
        return self._camera._pipeline_validate(self)


# Buffers and requests.


class FrameMetadata:
    class Status(Enum):
        Success = 0
        Error = 1
        Cancelled = 2

    class Plane:
        def __init__(self, bytes_used: int = 0) -> None:
            self.bytes_used = bytes_used

    def __init__(self) -> None:
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self.planes: list[FrameMetadata.Plane] = []


class FrameBuffer:
    class Plane:
        def __init__(self, fd: int = -1, offset: int = 0, length: int = 0) -> None:
            self.fd, self.offset, self.length = fd, offset, length

    def __init__(self, planes: Sequence[FrameBuffer.Plane], cookie: int = 0) -> None:
        self.planes = list(planes)
        self.cookie = cookie
        self.metadata = FrameMetadata()


class Request:
    class Status(Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    def __init__(self, camera: Camera, cookie: int) -> None:
        self._camera = camera
        self.cookie = cookie
        self.status = Request.Status.Pending
        self.sequence = 0
        self.buffers: dict[Stream, FrameBuffer] = {}
        self.metadata: dict[ControlId, Any] = {}
        self.controls: dict[ControlId, Any] = {}

    def add_buffer(self, stream: Stream, buffer: FrameBuffer) -> None:
        if stream in self.buffers:
            raise _error("Failed to add buffer", errno.EEXIST)
        self.buffers[stream] = buffer

    def set_control(self, control: ControlId, value: Any) -> None:
        self.controls[control] = value

    def reuse(self) -> None:
        # The binding always keeps the buffers (py_main.cpp:484, ReuseBuffers).
        self.status = Request.Status.Pending
        self.metadata = {}
        self.controls = {}


# The camera and its manager.


@dataclass(frozen=True)
class SensorMode:
    """One mode of a sensor: its raw format ("SRGGB10_CSI2P") or a USB camera's
    compressed one ("MJPEG"), size, and fastest frame rate."""

    format: str
    width: int
    height: int
    max_fps: float

    @property
    def bit_depth(self) -> int:
        digits = "".join(c for c in self.format.split("_")[0] if c.isdigit())
        return int(digits) if digits else 8


@dataclass
class CameraSpec:
    """A camera as its pipeline handler would enumerate it."""

    id: str
    model: str
    modes: list[SensorMode]
    usb: bool = False
    location: int = 2
    rotation: int = 0


# The Pi 4 ISP (bcm2835-isp) per output format: bits per pixel, bytesperline
# alignment and the image size multiplier x2 (bcm2835-isp-fmts.h, supported_formats).
_ISP_FORMATS: dict[str, tuple[int, int, int]] = {
    "YUV420": (8, 32, 3),
    "YVU420": (8, 32, 3),
    "NV12": (8, 32, 3),
    "NV21": (8, 32, 3),
    "YUYV": (16, 64, 2),
    "UYVY": (16, 64, 2),
    "RGB888": (24, 32, 2),
    "BGR888": (24, 32, 2),
    "XBGR8888": (32, 64, 2),
    "XRGB8888": (32, 64, 2),
}
# bcm2835-v4l2-isp.c: MIN_DIM and MAX_DIM, which its try_fmt clamps both sides to.
_ISP_MIN_DIM, _ISP_MAX_DIM = 64, 16384
_RAW_FORMATS = ("SRGGB", "SGRBG", "SGBRG", "SBGGR", "R8", "R10", "R12")


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def isp_layout(fmt: str, width: int, height: int) -> tuple[int, int]:
    """(stride, frame size) the Pi 4 ISP gives an output of this format and size."""
    depth, alignment, multiplier_x2 = _ISP_FORMATS[fmt]
    if depth == 24:  # get_bytesperline(): 24 bpp rows are aligned in pixels, not bytes
        stride = _align(width, 32) * 3
    else:
        stride = _align(width * depth // 8, alignment)
    return stride, stride * height * multiplier_x2 // 2


def _is_raw(fmt: str) -> bool:
    return fmt.startswith(_RAW_FORMATS)


class Camera:
    def __init__(self, manager: CameraManager, spec: CameraSpec) -> None:
        self._manager = manager
        self.spec = spec
        self.id = spec.id
        self._lock = threading.RLock()
        self._acquired = False
        self._running = False
        self._configured: CameraConfiguration | None = None
        self._mode = max(spec.modes, key=lambda m: m.width * m.height)
        self._queue: list[Request] = []
        self._sequence = 0
        self._frame_duration_ns = 0
        self._next_frame_ns = 0
        self._images: dict[Stream, bytes] = {}
        # The pipeline's fixed streams (vc4.cpp:532: ISP Output0 for the largest
        # output, Output1 for the other; the raw stream is Unicam's Image node).
        self._output_streams = [Stream("ISP Output0"), Stream("ISP Output1")]
        self._raw_stream = Stream("Unicam Image")
        # For tests: the controls each start() got, by name, and the streams of each
        # configure() as (format, width, height, stride).
        self.started_with: list[dict[str, Any]] = []
        self.configured: list[list[tuple[str, int, int, int]]] = []

    def __repr__(self) -> str:
        return f"<libcamera.Camera '{self.id}'>"

    # Properties and controls.

    @property
    def properties(self) -> dict[ControlId, Any]:
        found: dict[ControlId, Any] = {
            properties.Model: self.spec.model,
            properties.Location: self.spec.location,
        }
        if not self.spec.usb:
            # A USB camera has no colour filter arrangement, which is how picamera2
            # tells it from a Raspberry Pi camera (picamera2.py:783-785).
            found[properties.Rotation] = self.spec.rotation
            found[properties.ColorFilterArrangement] = (
                properties.draft.ColorFilterArrangementEnum.RGGB
            )
            found[properties.PixelArraySize] = Size(self._largest.width, self._largest.height)
        return found

    @property
    def _largest(self) -> SensorMode:
        return max(self.spec.modes, key=lambda m: m.width * m.height)

    @property
    def controls(self) -> dict[ControlId, ControlInfo]:
        if self.spec.usb:
            return {
                controls.Brightness: ControlInfo(-1.0, 1.0, 0.0),
                controls.ExposureTime: ControlInfo(100, 1_000_000, 20_000),
            }
        # The frame duration limits follow the configured sensor mode, which is why
        # picamera2 reads the controls again after configure() (picamera2.py:1245-1251).
        fastest = round(1e6 / self._mode.max_fps)
        largest = self._largest
        return {
            controls.FrameDurationLimits: ControlInfo(fastest, 1_000_000_000, fastest),
            controls.ExposureTime: ControlInfo(26, 1_000_000_000, 20_000),
            controls.AnalogueGain: ControlInfo(1.0, 16.0, 1.0),
            controls.draft.NoiseReductionMode: ControlInfo(0, 4, 0),
            controls.ScalerCrop: ControlInfo(
                Rectangle(0, 0, 64, 64),
                Rectangle(0, 0, largest.width, largest.height),
                Rectangle(0, 0, largest.width, largest.height),
            ),
        }

    @property
    def streams(self) -> set[Stream]:
        return {stream for stream in self._images}

    # State machine (camera.cpp).

    def acquire(self) -> None:
        with self._lock:
            if self._acquired:  # camera.cpp:1015-1024: -EBUSY once someone holds it
                raise _error("Failed to acquire camera", errno.EBUSY)
            self._acquired = True
            self._manager.acquired.append(self.id)

    def release(self) -> None:
        with self._lock:
            if self._running:  # camera.cpp:1048-1052: not while running
                raise _error("Failed to release camera", errno.EBUSY)
            self._acquired = False
            self._configured = None

    def generate_configuration(self, roles: Sequence[StreamRole]) -> CameraConfiguration:
        streams = [self._generated(role) for role in roles]
        return CameraConfiguration(self, streams)

    def _generated(self, role: StreamRole) -> StreamConfiguration:
        if role == StreamRole.Raw or self.spec.usb:
            # pipeline_base.cpp:409-417: the sensor's own formats and sizes, largest
            # first, 2 buffers. A USB camera lists its compressed format here.
            largest = self._largest
            formats: dict[str, list[Size]] = {}
            for mode in self.spec.modes:
                formats.setdefault(mode.format, []).append(Size(mode.width, mode.height))
            return StreamConfiguration(
                largest.format,
                Size(largest.width, largest.height),
                2,
                None if self.spec.usb else ColorSpace.Raw(),
                StreamFormats(formats),
            )
        # pipeline_base.cpp:453-458 (the viewfinder role picamera2 asks for).
        isp = StreamFormats({name: [] for name in _ISP_FORMATS})
        return StreamConfiguration("XRGB8888", Size(800, 600), 4, ColorSpace.Sycc(), isp)

    def _pipeline_validate(self, config: CameraConfiguration) -> CameraConfiguration.Status:
        status = CameraConfiguration.Status.Valid
        raws = [cfg for cfg in config if _is_raw(str(cfg.pixel_format))]
        outputs = [cfg for cfg in config if not _is_raw(str(cfg.pixel_format))]
        if self.spec.usb:
            return self._usb_validate(outputs)
        if len(raws) > 1 or len(outputs) > 2:  # vc4.cpp:459-463
            return CameraConfiguration.Status.Invalid
        mode = self._sensor_mode(config, raws, outputs)
        if mode is None:
            return CameraConfiguration.Status.Invalid
        for raw in raws:
            # vc4.cpp:492-498: the raw stream is whatever the sensor mode gives.
            if str(raw.pixel_format) != mode.format or raw.size != Size(mode.width, mode.height):
                raw.pixel_format = PixelFormat(mode.format)
                raw.size = Size(mode.width, mode.height)
                status = CameraConfiguration.Status.Adjusted
            raw.stride = _align(mode.width * mode.bit_depth // 8, 32)
            raw.frame_size = raw.stride * mode.height
        # pipeline_base.cpp:204-205: outputs largest first; vc4.cpp:510-526: no output
        # larger than the first in either dimension.
        outputs.sort(key=lambda cfg: (cfg.size.width, cfg.size.height), reverse=True)
        for cfg in outputs:
            fmt = str(cfg.pixel_format)
            if fmt not in _ISP_FORMATS:
                return CameraConfiguration.Status.Invalid
            bounded = Size(
                min(cfg.size.width, outputs[0].size.width),
                min(cfg.size.height, outputs[0].size.height),
            )
            # The ISP driver's try_fmt clamps to [MIN_DIM, MAX_DIM] and works out the
            # stride and image size (bcm2835-v4l2-isp.c, bcm2835_isp_node_try_fmt), and
            # libcamera writes all of it back (pipeline_base.cpp:295-300, 332-357).
            tried = Size(
                max(min(bounded.width, _ISP_MAX_DIM), _ISP_MIN_DIM),
                max(min(bounded.height, _ISP_MAX_DIM), _ISP_MIN_DIM),
            )
            if tried != cfg.size:
                cfg.size = tried
                status = CameraConfiguration.Status.Adjusted
            cfg.stride, cfg.frame_size = isp_layout(fmt, tried.width, tried.height)
        return status

    def _sensor_mode(
        self,
        config: CameraConfiguration,
        raws: list[StreamConfiguration],
        outputs: list[StreamConfiguration],
    ) -> SensorMode | None:
        wanted = config.sensor_config
        if wanted is not None:
            # pipeline_base.cpp:231-240: a requested sensor configuration applies as it
            # is or the whole configuration is invalid.
            for mode in self.spec.modes:
                if (mode.width, mode.height) == (
                    wanted.output_size.width,
                    wanted.output_size.height,
                ) and mode.bit_depth == wanted.bit_depth:
                    return mode
            return None
        # Without one, the smallest mode that covers the largest stream (libcamera
        # scores modes more finely; picamera2 always sends a sensor configuration
        # for a Pi camera, picamera2.py:1062-1105, so this only serves other callers).
        sizes = [cfg.size for cfg in raws + outputs]
        width = max(s.width for s in sizes)
        height = max(s.height for s in sizes)
        covering = [m for m in self.spec.modes if m.width >= width and m.height >= height]
        return min(covering or self.spec.modes, key=lambda m: m.width * m.height)

    def _usb_validate(self, outputs: list[StreamConfiguration]) -> CameraConfiguration.Status:
        # A UVC camera gives one stream, in one of the sizes it lists.
        if len(outputs) != 1:
            return CameraConfiguration.Status.Invalid
        cfg = outputs[0]
        fmt = str(cfg.pixel_format)
        sizes = [Size(m.width, m.height) for m in self.spec.modes if m.format == fmt]
        if not sizes:
            return CameraConfiguration.Status.Invalid
        if cfg.size in sizes:
            return CameraConfiguration.Status.Valid
        cfg.size = min(
            sizes, key=lambda s: abs(s.width - cfg.size.width) + abs(s.height - cfg.size.height)
        )
        return CameraConfiguration.Status.Adjusted

    def configure(self, config: CameraConfiguration) -> None:
        with self._lock:
            if not self._acquired or self._running:  # camera.cpp:1195-1198
                raise _error("Failed to configure camera", errno.EACCES)
            # camera.cpp:1203-1206: libcamera validates again and takes only a
            # configuration that needs no more adjusting.
            if config.validate() != CameraConfiguration.Status.Valid:
                raise _error("Failed to configure camera", errno.EINVAL)
            outputs = sorted(
                (cfg for cfg in config if not _is_raw(str(cfg.pixel_format))),
                key=lambda cfg: (cfg.size.width, cfg.size.height),
                reverse=True,
            )
            for cfg, stream in zip(outputs, self._output_streams, strict=False):
                cfg.stream = stream
            for cfg in config:
                if _is_raw(str(cfg.pixel_format)):
                    cfg.stream = self._raw_stream
            self._images = {}
            for cfg in config:
                assert cfg.stream is not None
                cfg.stream.configuration = copy.copy(cfg)
                self._images[cfg.stream] = _stream_image(cfg)
            if not self.spec.usb:
                chosen = self._sensor_mode(config, [], list(config))
                assert chosen is not None
                self._mode = chosen
            self._configured = config
            self.configured.append(
                [(str(c.pixel_format), c.size.width, c.size.height, c.stride) for c in config]
            )

    def start(self, controls: Mapping[ControlId, Any] | None = None) -> None:
        with self._lock:
            if self._configured is None or self._running:  # camera.cpp:1400-1425
                raise _error("Failed to start camera", errno.EACCES)
            given = dict(controls or {})
            self.started_with.append({control.name: value for control, value in given.items()})
            fastest_ns = round(1e9 / self._mode.max_fps)
            limits = given.get(_control("FrameDurationLimits"))
            duration_ns = fastest_ns
            if limits is not None:
                # The sensor runs as fast as both its mode and the limits allow.
                duration_ns = min(max(int(limits[0]) * 1000, fastest_ns), int(limits[1]) * 1000)
            self._frame_duration_ns = duration_ns
            self._next_frame_ns = time.monotonic_ns() + duration_ns
            self._running = True
        self._manager._running(self)

    def stop(self) -> None:
        with self._lock:
            if not self._running:  # camera.cpp:1445-1455: a no-op unless running
                return
            self._running = False
            cancelled, self._queue = self._queue, []
            # camera.cpp:1433-1434: pending requests are cancelled and complete,
            # synchronously, before stop() returns.
            for request in cancelled:
                request.status = Request.Status.Cancelled
                for buffer in request.buffers.values():
                    buffer.metadata.status = FrameMetadata.Status.Cancelled
                self._manager._complete(request)

    def create_request(self, cookie: int = 0) -> Request:
        return Request(self, cookie)

    def queue_request(self, request: Request) -> None:
        with self._lock:
            if not self._running:  # camera.cpp:1334-1336: only while running
                raise _error("Failed to queue request", errno.EACCES)
            if request._camera is not self:
                raise _error("Failed to queue request", errno.EXDEV)
            if request.status != Request.Status.Pending or not request.buffers:
                raise _error("Failed to queue request", errno.EINVAL)
            self._queue.append(request)

    # The sensor and ISP, run by the manager's thread.

    def _frame_due(self, now_ns: int) -> bool:
        """Make a frame if one is due: fill the oldest queued request and complete it.
        A frame with no request queued is dropped, as a sensor's would be."""
        with self._lock:
            if not self._running or now_ns < self._next_frame_ns:
                return False
            self._sequence += 1
            self._next_frame_ns += self._frame_duration_ns
            if self._next_frame_ns < now_ns:  # fell behind: skip, do not burst
                self._next_frame_ns = now_ns + self._frame_duration_ns
            if not self._queue:
                return True
            request = self._queue.pop(0)
            for stream, buffer in request.buffers.items():
                image = self._images.get(stream, b"")
                plane = buffer.planes[0]
                if image:
                    os.pwrite(plane.fd, image, plane.offset)
                buffer.metadata.status = FrameMetadata.Status.Success
                buffer.metadata.sequence = self._sequence
                buffer.metadata.timestamp = now_ns
                buffer.metadata.planes = [FrameMetadata.Plane(plane.length)]
            request.sequence = self._sequence
            request.metadata = {
                controls.SensorTimestamp: now_ns,
                controls.FrameDuration: self._frame_duration_ns // 1000,
                controls.ExposureTime: min(20_000, self._frame_duration_ns // 1000),
                controls.AnalogueGain: 1.0,
            }
            request.status = Request.Status.Complete
            self._manager._complete(request)
            return True

    @property
    def running(self) -> bool:
        return self._running

    @property
    def next_frame_ns(self) -> int:
        return self._next_frame_ns


def _control(name: str) -> ControlId:
    for value in vars(controls).values():
        if isinstance(value, ControlId) and value.name == name:
            return value
    raise KeyError(name)


class CameraManager:
    _instance: CameraManager | None = None

    def __init__(self, specs: Sequence[CameraSpec]) -> None:
        # py_camera_manager.cpp:26: a non-blocking eventfd tells the application
        # that requests have completed.
        self.event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.cameras = [Camera(self, spec) for spec in specs]
        self.acquired: list[str] = []
        self._completed: list[Request] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    @staticmethod
    def singleton() -> CameraManager:
        if CameraManager._instance is None:
            CameraManager._instance = CameraManager(_attached)
        return CameraManager._instance

    def get(self, camera_id: str) -> Camera | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def get_ready_requests(self) -> list[Request]:
        # py_camera_manager.cpp:62-82: read the eventfd; nothing there, nothing
        # returned; otherwise every request completed so far.
        try:
            os.eventfd_read(self.event_fd)
        except BlockingIOError:
            return []
        with self._lock:
            ready, self._completed = self._completed, []
        return ready

    def _complete(self, request: Request) -> None:
        # py_camera_manager.cpp:85-89 (called from libcamera's own thread).
        with self._lock:
            self._completed.append(request)
        os.eventfd_write(self.event_fd, 1)

    def _running(self, camera: Camera) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="fake-libcamera", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        # libcamera completes requests from its own thread, never the caller's.
        while True:
            running = [camera for camera in self.cameras if camera.running]
            if not running:
                with self._wake:
                    if not any(camera.running for camera in self.cameras):
                        self._thread = None
                        return
                continue
            now = time.monotonic_ns()
            for camera in running:
                camera._frame_due(now)
            soonest = min((c.next_frame_ns for c in running if c.running), default=now)
            time.sleep(max(0, soonest - time.monotonic_ns()) / 1e9 + 0.0002)

    def close(self) -> None:
        for camera in self.cameras:
            camera.stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        os.close(self.event_fd)


# The rig: not libcamera's API.

_attached: list[CameraSpec] = []


def attach(specs: Sequence[CameraSpec]) -> None:
    """The cameras the next CameraManager enumerates, in libcamera's order."""
    reset()
    _attached[:] = list(specs)


def reset() -> None:
    manager, CameraManager._instance = CameraManager._instance, None
    if manager is not None:
        manager.close()
    _attached.clear()


def manager() -> CameraManager:
    return CameraManager.singleton()


def known_picture(width: int, height: int) -> npt.NDArray[np.uint8]:
    """The I420 picture every frame of a stream of this size holds: (height * 3/2,
    width), planes one after the other, no padding."""
    rows = np.arange(height, dtype=np.int64)[:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    luma = (rows * 3 + cols * 5 + 16) % 220 + 16
    half_rows, half_cols = rows[: height // 2], cols[:, : width // 2]
    u = (half_rows * 7 + half_cols * 2 + 40) % 200 + 28
    v = (half_rows * 2 + half_cols * 9 + 90) % 200 + 28
    flat = np.concatenate([luma.ravel(), u.ravel(), v.ravel()])
    return flat.reshape(height * 3 // 2, width).astype(np.uint8)


_PADDING = 0xEE  # what the ISP leaves in a row's padding here: never picture data


def _stream_image(cfg: StreamConfiguration) -> bytes:
    """What the ISP writes into a buffer of this stream: the test picture laid out
    with the stream's stride (planar YUV420 puts each chroma plane's rows at half the
    stride). Other formats (raw, RGB) are left as the buffer is."""
    if str(cfg.pixel_format) != "YUV420":
        return b""
    width, height, stride = cfg.size.width, cfg.size.height, cfg.stride
    picture = known_picture(width, height)
    laid = np.full(cfg.frame_size, _PADDING, dtype=np.uint8)
    luma = laid[: stride * height].reshape(height, stride)
    luma[:, :width] = picture[:height]
    chroma = picture[height:].reshape(2, height // 2, width // 2)
    for plane in range(2):
        start = stride * height + plane * (stride // 2) * (height // 2)
        rows = laid[start : start + (stride // 2) * (height // 2)].reshape(height // 2, stride // 2)
        rows[:, : width // 2] = chroma[plane]
    return laid.tobytes()
