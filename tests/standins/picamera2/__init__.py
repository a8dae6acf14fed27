"""Stand-in for picamera2 (see ../README.md): the calls peercam makes, behaving as
picamera2 0.3.38 does, over a test-pattern "sensor" and a libx264 "hardware" encoder.

Line numbers cite picamera2 0.3.38's picamera2/picamera2.py unless another file is
named. What it mirrors: the exclusive camera (a second open raises until the first
close ends), the threads frames pass through (libcamera's completion, the camera
manager's listener, the preview thread that runs `post_callback` and the encoders),
how long stopping and closing take, USB webcams in `global_camera_info()`, and the
configuration libcamera writes back.
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import tempfile
import threading
import time
from types import TracebackType
from typing import Any, TextIO

import numpy as np

from peercam.capture.test_pattern import TestPatternCamera
from picamera2._log import record

# bcm2835-isp aligns YUV420 rows to 32 bytes (bcm2835-isp-fmts.h, bytesperline_align),
# and libcamera keeps the half-width chroma rows aligned too: Y rows are padded to 64.
_STRIDE_ALIGN = 64
# picamera2.py:352-360: a preview thread wakes on the notify pipe or every 0.2 s
# (previews/null_preview.py:24) and the camera manager's listener likewise
# (picamera2.py:115-121); closing waits for each to notice.
_THREAD_POLL = 0.2
# Opening and configuring a camera take 0.5-1.5 s on a Pi (libcamera enumerates and
# acquires it, then allocates its buffers); the stand-in takes the low end.
_OPEN_SECONDS = 0.3
_CONFIGURE_SECONDS = 0.2


def _csi_count() -> int:
    return int(os.environ.get("PICAMERA2_STANDIN_CAMERAS", "1"))


def _usb_count() -> int:
    return int(os.environ.get("PICAMERA2_STANDIN_USB_CAMERAS", "0"))


_CSI_MODELS = ("imx708", "imx219", "imx477", "ov5647")
# Each sensor's raw modes, as rpicam-hello --list-cameras shows them.
_MODES = {
    "imx708": (((1536, 864), 120.13), ((2304, 1296), 56.03), ((4608, 2592), 14.35)),
    "imx219": (((640, 480), 103.33), ((1640, 1232), 41.85), ((3280, 2464), 21.19)),
    "imx477": (((1332, 990), 120.05), ((2028, 1520), 40.01), ((4056, 3040), 10.0)),
    "ov5647": (((640, 480), 58.92), ((1296, 972), 43.25), ((2592, 1944), 15.63)),
}


def _libcamera_cameras() -> list[dict[str, Any]]:
    """Cameras in libcamera's own order ("Num"): here USB first, then the CSI ports in
    port order, so that "Num" and picamera2's sorted position differ as they can."""
    cameras: list[dict[str, Any]] = []
    for n in range(_usb_count()):
        product = f"046d:{0x825 + n:04x}"
        cameras.append(
            {"Model": f"UVC Camera ({product})", "Location": 2,
             "Id": f"/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1.{n + 1}:1.0-{product}"}
        )  # fmt: skip
    for n in range(_csi_count()):
        model = _CSI_MODELS[n % len(_CSI_MODELS)]
        cameras.append(
            {"Model": model, "Location": 2, "Rotation": 180,
             "Id": f"/base/soc/i2c0mux/i2c@{n}/{model}@1a"}
        )  # fmt: skip
    for num, camera in enumerate(cameras):
        camera["Num"] = num
    return cameras


def _is_usb(info: dict[str, Any]) -> bool:
    return "/usb" in str(info["Id"])


class _CameraManager:
    """picamera2.py:78-121: one listener thread per process, started with the first
    open camera and joined when the last one closes. Completed requests pass through
    it to each camera's preview thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[int, Picamera2] = {}
        self._inbox: queue.Queue[tuple[int, _Request]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._running = False

    def add(self, num: int, camera: Picamera2) -> None:
        with self._lock:
            self._cameras[num] = camera
            if not self._running:
                self._running = True
                self._thread = threading.Thread(target=self._listen, daemon=True)
                self._thread.start()

    def cleanup(self, num: int) -> None:
        thread = None
        with self._lock:
            del self._cameras[num]
            if not self._cameras:
                self._running = False
                thread = self._thread
        if thread is not None:
            thread.join()

    def complete(self, num: int, request: _Request) -> None:
        self._inbox.put((num, request))

    def _listen(self) -> None:
        while self._running:
            try:
                num, request = self._inbox.get(timeout=_THREAD_POLL)
            except queue.Empty:
                continue
            with self._lock:
                camera = self._cameras.get(num)
            if camera is not None:
                camera._ready.put(request)


_manager = _CameraManager()


class _CameraLock:
    """libcamera's Camera::acquire: exclusive across threads and processes (the
    pipeline handler locks the media devices), so a lock file per camera Id."""

    def __init__(self, camera_id: str) -> None:
        folder = os.environ.get("PICAMERA2_STANDIN_LOCK_DIR") or os.path.dirname(
            os.environ.get("PICAMERA2_STANDIN_LOG", "") or tempfile.gettempdir() + "/x"
        )
        name = re.sub(r"[^A-Za-z0-9]+", "_", camera_id)
        self._path = os.path.join(folder, f"picamera2-standin-{name}.lock")
        self._file: TextIO | None = None

    def acquire(self) -> None:
        handle = open(self._path, "a")  # held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError("Failed to acquire camera: Device or resource busy") from None
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # drops the flock
            self._file = None


class _Request:
    """A completed request: buffers per stream, metadata, and the picture the "ISP"
    made (handed to the stand-in encoder in place of a dmabuf)."""

    def __init__(
        self,
        buffers: dict[str, np.ndarray],
        timestamp_ns: int,
        config: dict[str, Any],
        picture: Any,
    ) -> None:
        self._buffers = buffers
        self._metadata = {"SensorTimestamp": timestamp_ns}
        self.config = config
        self.picture = picture

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)


class MappedArray:
    """request.py:53-84: the stream's buffer as a 2-D array; YUV420 comes as
    (height * 3/2, stride) with the row padding left in (request.py:328-333)."""

    def __init__(
        self, request: _Request, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        self._request = request
        self._stream = stream
        self._array: np.ndarray | None = None

    def __enter__(self) -> MappedArray:
        _fail_if_asked()
        buffer = self._request._buffers[self._stream]
        config = self._request.config[self._stream]
        height = config["size"][1]
        self._array = buffer.reshape((height * 3 // 2, config["stride"]))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._array = None

    @property
    def array(self) -> np.ndarray | None:
        return self._array


_map_failures_lock = threading.Lock()
_map_failures = [int(os.environ.get("PICAMERA2_STANDIN_MAP_FAILURES", "0"))]


def _fail_if_asked() -> None:
    """request.py:45-46 raises when a buffer cannot be mapped;
    PICAMERA2_STANDIN_MAP_FAILURES=N makes the first N mappings fail so."""
    with _map_failures_lock:
        if _map_failures[0] > 0:
            _map_failures[0] -= 1
            raise RuntimeError("failed to find buffer")


def _padded_i420(frame_yuv: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    width, height = size
    out = np.zeros(height * 3 // 2 * stride, dtype=np.uint8)
    out[: height * stride].reshape(height, stride)[:, :width] = frame_yuv[:height]
    chroma_in = frame_yuv[height:].reshape(2, height // 2, width // 2)
    half = (height // 2) * (stride // 2)
    for plane in range(2):
        start = height * stride + plane * half
        rows = out[start : start + half].reshape(height // 2, stride // 2)
        rows[:, : width // 2] = chroma_in[plane]
    return out


def _adjusted(size: tuple[int, int]) -> tuple[int, int]:
    """What libcamera's validate() gives for a requested main size. Which sizes the
    real ISP adjusts is its own affair; PICAMERA2_STANDIN_ADJUST_MAIN=WxH makes the
    stand-in answer "Adjusted" with that size, as libcamera can."""
    forced = os.environ.get("PICAMERA2_STANDIN_ADJUST_MAIN")
    if forced:
        width, height = (int(part) for part in forced.split("x"))
        return width, height
    return size


def _stream_config_update(stream: dict[str, Any], size: tuple[int, int]) -> None:
    # picamera2.py:1151-1156: libcamera's answer is written back into the caller's dict.
    stride = (size[0] + _STRIDE_ALIGN - 1) // _STRIDE_ALIGN * _STRIDE_ALIGN
    stream["size"] = size
    stream["stride"] = stride
    stream["framesize"] = stride * size[1] * 3 // 2


class Picamera2:
    _cm = _manager

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        # picamera2.py:311-313: Pi cameras first, each group by Id, both descending.
        return sorted(
            _libcamera_cameras(), key=lambda cam: (not _is_usb(cam), cam["Id"]), reverse=True
        )

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        self.is_open = False
        self.started = False
        self._preview: threading.Thread | None = None
        cameras = self.global_camera_info()
        if camera_num >= len(cameras):  # picamera2.py:345-348
            raise RuntimeError(
                f'No camera number {camera_num} found - use "rpicam-hello --list-cameras" to '
                "check connected cameras"
            )
        self._info = cameras[camera_num]
        self.camera_idx = self._info["Num"]  # picamera2.py:349
        self._camera_lock = _CameraLock(self._info["Id"])
        try:
            self._camera_lock.acquire()  # picamera2.py:580, inside __init__'s try (362)
        except Exception as error:
            raise RuntimeError("Camera __init__ sequence did not complete.") from error
        time.sleep(_OPEN_SECONDS)
        record(f"open camera {camera_num}")
        self.is_open = True
        self.post_callback: Any = None
        self.camera_config: dict[str, Any] = {}
        self._controls: dict[str, Any] = {}
        self.lock = threading.Lock()  # picamera2.py:416: held around post_callback
        self._encoders: set[Any] = set()
        self._ready: queue.Queue[_Request] = queue.Queue()
        self._sensor: threading.Thread | None = None
        self._sensor_running = threading.Event()
        self._preview_abort = threading.Event()
        self._cm.add(self.camera_idx, self)

    @property
    def _usb(self) -> bool:
        return _is_usb(self._info)

    @property
    def camera_controls(self) -> dict[str, Any]:
        if self._usb:  # a UVC camera advertises none of the Pi's timing controls
            return {"ExposureTime": (100, 1_000_000, 20_000)}
        return {
            "FrameDurationLimits": (33333, 1_000_000, 33333),
            "NoiseReductionMode": (0, 4, 0),
            "ExposureTime": (26, 220_000_000, 20_000),
        }

    @property
    def sensor_modes(self) -> list[dict[str, Any]]:
        if self._usb:  # picamera2.py:599-604: not a raw sensor, only a format
            return [{"format": "MJPEG"}, {"format": "YUYV"}]
        return [
            {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10,
             "size": size, "fps": fps, "crop_limits": (0, 0, *_MODES[self._info["Model"]][-1][0]),
             "exposure_limits": (26, 220_000_000)}
            for size, fps in _MODES[self._info["Model"]]
        ]  # fmt: skip

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        # picamera2.py:902-951
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        default = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}
        main_config = self._stream(default, main)
        lores_config = None
        if lores is not None:
            lores_config = self._stream(
                {"format": "YUV420", "size": main_config["size"], "preserve_ar": False}, lores
            )
        chosen = dict(controls or {})
        if "NoiseReductionMode" in self.camera_controls:  # picamera2.py:938-942
            chosen = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | chosen
        return {
            "use_case": use_case, "transform": transform, "colour_space": colour_space,
            "buffer_count": buffer_count, "queue": queue, "main": main_config,
            "lores": lores_config, "raw": None if self._usb else raw, "controls": chosen,
            "sensor": None if self._usb else sensor, "display": display, "encode": encode,
        }  # fmt: skip

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any]:
        # picamera2.py:749-772 and align_stream(optimal=False), 1107-1120.
        config = dict(defaults)
        for key, value in (updates or {}).items():
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ...")
            config[key] = value
        width, height = config["size"]
        config["size"] = (width - width % 2, height - height % 2)
        return config

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        # picamera2.py:1180-1301, for a dict.
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        assert camera_config is not None, "the stand-in takes a configuration dict"
        config = camera_config.copy()  # shallow, as at 1205: stream dicts are shared
        self._controls = self._libcamera_controls(config["controls"])
        time.sleep(_CONFIGURE_SECONDS)
        _stream_config_update(config["main"], _adjusted(config["main"]["size"]))
        if config["lores"] is not None:
            _stream_config_update(config["lores"], config["lores"]["size"])
        main, lores = config["main"], config["lores"]
        record(
            f"configure main={main['size'][0]}x{main['size'][1]} {main['format']} "
            + (f"lores={lores['size'][0]}x{lores['size'][1]} {lores['format']} " if lores else "")
            + f"controls={self._controls} transform={config['transform']}"
        )
        self.camera_config = config

    def _libcamera_controls(self, controls: dict[str, Any]) -> dict[str, Any]:
        """controls.py:8-35: FrameRate is FrameDurationLimits in microseconds, and a
        control the camera does not advertise is an error at configure()."""
        result: dict[str, Any] = {}
        for name, value in controls.items():
            if name == "FrameRate":
                rates = value if isinstance(value, (tuple, list)) else (value, value)
                name, value = "FrameDurationLimits", (int(1e6 / rates[1]), int(1e6 / rates[0]))
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            result[name] = value
        return result

    def camera_configuration(self) -> dict[str, Any]:
        return self.camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        stream: dict[str, Any] = self.camera_config[name]
        return stream

    def start_encoder(
        self,
        encoder: Any = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        # picamera2.py:2455-2498
        if encoder is None:
            raise RuntimeError("No encoder specified")
        if output is not None:
            encoder.output = output  # the encoder insists on Output objects
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        name = name or self.camera_config["encode"]
        stream = self.camera_config[name]
        encoder.name = name
        encoder.width, encoder.height = stream["size"]
        encoder.stride = stream["stride"]
        encoder.format = stream["format"]
        if encoder.framerate is None:
            encoder.framerate = 1_000_000 / max(
                self.camera_controls["FrameDurationLimits"][0], 33333
            )
        encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(encoder)
        record(
            f"start_encoder bitrate={encoder.bitrate} repeat={encoder.repeat} "
            f"iperiod={encoder.iperiod} framerate={encoder.framerate} profile={encoder.profile}"
        )

    def stop_encoder(self, encoders: Any = None) -> None:
        # picamera2.py:2500-2516: each encoder's stop() joins its thread first.
        chosen = list(self._encoders) if encoders is None else [encoders]
        for encoder in chosen:
            encoder.stop()
        with self.lock:
            for encoder in chosen:
                self._encoders.discard(encoder)
        record("stop_encoder")

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        # picamera2.py:1347-1370: configured first; with no event loop of the caller's,
        # a preview thread is started to run the callbacks and encoders.
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        if self._preview is None:
            self._preview_abort.clear()
            self._preview = threading.Thread(target=self._process_requests, daemon=True)
            self._preview.start()
        record("start")
        self.started = True
        self._sensor_running.set()
        self._sensor = threading.Thread(target=self._run_sensor, daemon=True)
        self._sensor.start()

    def stop(self) -> None:
        # picamera2.py:1386-1430: libcamera stops once the request in flight completes.
        if not self.started:
            return
        record("stop")
        if self._preview is not None and not self._preview.is_alive():
            # picamera2.py:1423-1424: the stop is handed to the preview thread's loop
            # and waited for without a timeout; that thread died of an exception, so
            # this never returns.
            record("stop hangs")
            threading.Event().wait()
        self._sensor_running.clear()
        if self._sensor is not None:
            self._sensor.join()
            self._sensor = None
        self.started = False

    def close(self) -> None:
        # picamera2.py:725-752: preview thread, camera, release, then the listener.
        if not self.is_open:
            return
        if self._preview is not None:
            self._preview_abort.set()
            self._preview.join()
            self._preview = None
        self.stop()
        self._camera_lock.release()
        self._cm.cleanup(self.camera_idx)
        self.is_open = False
        self.camera_config = {}
        record("close")

    def _process_requests(self) -> None:
        """The preview thread (previews/null_preview.py:13-27 calling picamera2.py:1432-
        1514): post_callback, then every encoder, with the camera's lock held. Nothing
        catches an exception: it ends this thread, and with it every callback and
        encode (the sensor runs on, unseen)."""
        while not self._preview_abort.is_set():
            try:
                request = self._ready.get(timeout=_THREAD_POLL)
            except queue.Empty:
                continue
            with self.lock:
                if self.post_callback is not None:
                    self.post_callback(request)
                for encoder in list(self._encoders):
                    if encoder.name in self.camera_config:
                        encoder.encode(encoder.name, request)

    def _run_sensor(self) -> None:
        """libcamera's side: a completed request every frame interval."""
        config = self.camera_config
        main, lores = config["main"], config["lores"]
        limits = self._controls.get("FrameDurationLimits", (33333, 33333))
        fps = 1e6 / limits[0]
        pattern = TestPatternCamera(main["size"][0], main["size"][1], round(fps))
        small = TestPatternCamera(lores["size"][0], lores["size"][1], round(fps)) if lores else None
        interval = 1 / fps
        deadline = time.monotonic()
        while self._sensor_running.is_set():
            timestamp_ns = time.monotonic_ns()
            picture = pattern._capture(time.monotonic()).image
            buffers = {"main": _padded_i420(picture.to_ndarray(), main["size"], main["stride"])}
            if small is not None:
                small_picture = small._capture(time.monotonic()).image.to_ndarray()
                buffers["lores"] = _padded_i420(small_picture, lores["size"], lores["stride"])
            self._cm.complete(self.camera_idx, _Request(buffers, timestamp_ns, config, picture))
            deadline += interval
            time.sleep(max(0.0, deadline - time.monotonic()))
