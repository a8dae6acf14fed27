"""Stand-in for picamera2 (see ../README.md): the calls peercam makes, backed by a
test pattern "sensor" and a libx264 "hardware" encoder."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any

import numpy as np

from peercam.capture.test_pattern import TestPatternCamera
from picamera2._log import record

# Real cameras pad rows for DMA: a stride wider than the picture is the common case.
_STRIDE_ALIGN = 64


class _Request:
    def __init__(self, buffers: dict[str, np.ndarray], timestamp_ns: int) -> None:
        self._buffers = buffers
        self._metadata = {"SensorTimestamp": timestamp_ns}

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)


class MappedArray:
    def __init__(
        self, request: _Request, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        self._array = request._buffers[stream]

    def __enter__(self) -> MappedArray:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    @property
    def array(self) -> np.ndarray:
        return self._array


def _padded_i420(frame_yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    stride = (width + _STRIDE_ALIGN - 1) // _STRIDE_ALIGN * _STRIDE_ALIGN
    out = np.zeros((height * 3 // 2, stride), dtype=np.uint8)
    out[:height, :width] = frame_yuv[:height]
    chroma_in = frame_yuv[height:].reshape(2, height // 2, width // 2)
    chroma_out = out[height:].reshape(-1)
    half = (height // 2) * (stride // 2)
    for plane in range(2):
        rows = chroma_out[plane * half : (plane + 1) * half].reshape(height // 2, stride // 2)
        rows[:, : width // 2] = chroma_in[plane]
    return out


class Picamera2:
    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        if camera_num >= len(Picamera2.global_camera_info()):
            raise IndexError("list index out of range")
        record(f"open camera {camera_num}")
        self.camera_num = camera_num
        self.post_callback: Any = None
        self._config: dict[str, Any] | None = None
        self._encoders: list[Any] = []
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        count = int(os.environ.get("PICAMERA2_STANDIN_CAMERAS", "1"))
        return [
            {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/i2c@{n}/imx708@1a",
             "Num": n}
            for n in range(count)
        ]  # fmt: skip

    @property
    def sensor_modes(self) -> list[dict[str, Any]]:
        return [
            {"format": "SRGGB10_CSI2P", "size": (1536, 864), "fps": 120.13, "bit_depth": 10},
            {"format": "SRGGB10_CSI2P", "size": (2304, 1296), "fps": 56.03, "bit_depth": 10},
            {"format": "SRGGB10_CSI2P", "size": (4608, 2592), "fps": 14.35, "bit_depth": 10},
        ]

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
        return {
            "main": dict(main or {}),
            "lores": dict(lores) if lores else None,
            "controls": dict(controls or {}),
            "transform": transform,
        }

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        assert camera_config is not None
        record(
            f"configure main={camera_config['main']} lores={camera_config['lores']} "
            f"controls={camera_config['controls']} transform={camera_config['transform']}"
        )
        self._config = camera_config

    def start_encoder(
        self,
        encoder: Any = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        assert self._config is not None, "configure() first"
        width, height = self._config["main"]["size"]
        encoder.output = output
        encoder._open(width, height)
        self._encoders.append(encoder)
        record(
            f"start_encoder bitrate={encoder.bitrate} repeat={encoder.repeat} "
            f"iperiod={encoder.iperiod} framerate={encoder.framerate} profile={encoder.profile}"
        )

    def stop_encoder(self, encoders: Any = None) -> None:
        record("stop_encoder")
        self._encoders.clear()

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        assert self._config is not None, "configure() first"
        record("start")
        self._running.set()
        self._thread = threading.Thread(target=self._sensor, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        record("stop")
        self._running.clear()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        record("close")

    def _sensor(self) -> None:
        assert self._config is not None
        width, height = self._config["main"]["size"]
        fps = self._config["controls"].get("FrameRate", 30)
        lores = self._config["lores"]
        pattern = TestPatternCamera(width, height, fps)
        small = TestPatternCamera(lores["size"][0], lores["size"][1], fps) if lores else None
        interval = 1 / fps
        deadline = time.monotonic()
        while self._running.is_set():
            timestamp_ns = time.monotonic_ns()
            frame = pattern._capture(time.monotonic()).image
            buffers = {"main": _padded_i420(frame.to_ndarray(), width, height)}
            if small is not None:
                buffers["lores"] = _padded_i420(
                    small._capture(0.0).image.to_ndarray(), *lores["size"]
                )
            callback = self.post_callback
            if callback is not None:
                callback(_Request(buffers, timestamp_ns))
            for encoder in list(self._encoders):
                encoder._encode(frame, timestamp_ns)
            deadline += interval
            time.sleep(max(0.0, deadline - time.monotonic()))
