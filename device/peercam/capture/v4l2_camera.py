"""USB and other V4L2 cameras through PyAV (FFmpeg's video4linux2 input).

An H.264 camera's stream passes through to viewers as it is; MJPEG and YUYV are
decoded once and handed to the shared encoders. If the camera goes away (unplugged,
driver error) the capture thread says so, retries with backoff, and carries on when
it returns; viewers stay connected and resume at the next keyframe.

Everything after opening the device works on any PyAV input container, so tests feed
it H.264 and MJPEG files through exactly the code a camera uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from peercam.capture.source import ThreadedSource
from peercam.capture.v4l2_devices import force_keyframe
from peercam.h264_bitstream import IDR, nal_type, nal_units
from peercam.media import CapturedEncoded, CapturedVideo

logger = logging.getLogger(__name__)

_FFMPEG_INPUT_FORMAT = {"h264": "h264", "mjpeg": "mjpeg", "yuyv": "yuyv422"}

Opener = Callable[[], Any]  # returns an open av InputContainer


@dataclass(frozen=True)
class V4L2Settings:
    device: str
    input_format: str  # "h264", "mjpeg" or "yuyv"
    width: int
    height: int
    fps: int


def open_device(settings: V4L2Settings) -> Any:
    return av.open(
        settings.device,
        format="video4linux2",
        options={
            "input_format": _FFMPEG_INPUT_FORMAT[settings.input_format],
            "video_size": f"{settings.width}x{settings.height}",
            "framerate": str(settings.fps),
        },
    )


def is_idr(access_unit: bytes) -> bool:
    return any(nal and nal_type(nal) == IDR for nal in nal_units(access_unit))


class V4L2Camera(ThreadedSource[Any, CapturedVideo]):
    kind = "video"

    def __init__(
        self,
        settings: V4L2Settings,
        opener: Opener | None = None,
        pace_by_timestamps: bool = False,
        backoff: tuple[float, float] = (1.0, 10.0),
    ) -> None:
        super().__init__(backoff)
        self.settings = settings
        self.name = self.label = f"v4l2:{settings.device}"
        self.native_codec = "h264" if settings.input_format == "h264" else None
        self._opener = opener or (lambda: open_device(settings))
        # Files (tests, recorded clips) arrive as fast as they can be read; a camera
        # paces itself. Files are played at their timestamps' pace instead.
        self._pace = pace_by_timestamps
        self._want_raw = False
        self._want_encoded = False
        self._keyframes_forcible = True

    def set_outputs(self, raw: bool, encoded: bool, preview: bool = False) -> None:
        self._want_raw, self._want_encoded = raw, encoded

    def request_keyframe(self) -> bool:
        if self._pace or not self._keyframes_forcible:
            return False  # a recorded clip has only the keyframes it has
        if force_keyframe(self.settings.device):
            return True
        # Say it once: from now on viewers wait for the camera's own next IDR.
        logger.info("%s cannot be asked for keyframes; viewers start at its next IDR", self.name)
        self._keyframes_forcible = False
        return False

    def _open(self) -> Any:
        return self._opener()

    def _close(self, container: Any) -> None:
        container.close()

    def _delay_after_end(self, backoff: float) -> float:
        # A recorded clip ends by design and starts over at once; a camera's stream
        # ending is news, and gets the backoff.
        if self._pace:
            return 0.0
        logger.warning("%s stream ended; reopening in %.1f s", self.name, backoff)
        return backoff

    def _use(self, container: Any) -> None:
        logger.info("%s capturing %s", self.name, self.settings.input_format)
        self._capture(container)

    def _capture(self, container: Any) -> None:
        stream = container.streams.video[0]
        decoder = av.CodecContext.create(stream.codec_context.name, "r")
        time_base = stream.time_base
        started = time.monotonic()
        first_pts: int | None = None
        decoding_from_keyframe = False
        for index, packet in enumerate(container.demux(stream)):
            if self._stopping.is_set():
                return
            if packet.size == 0:
                continue
            if self._pace:
                # A raw H.264 file has no timestamps: then the configured rate paces it.
                if packet.pts is not None and time_base is not None:
                    first_pts = packet.pts if first_pts is None else first_pts
                    due = started + float((packet.pts - first_pts) * time_base)
                else:
                    due = started + index / self.settings.fps
                if due > time.monotonic():
                    self._stopping.wait(due - time.monotonic())
            captured_at = time.monotonic()
            data = bytes(packet)
            if self.native_codec == "h264":
                keyframe = is_idr(data)
                if self._want_encoded:
                    self._hand_over(CapturedEncoded("h264", data, keyframe, captured_at))
                # Decoding must begin at an IDR; until one comes, skip.
                decoding_from_keyframe = self._want_raw and (decoding_from_keyframe or keyframe)
                if not decoding_from_keyframe:
                    continue
            elif not self._want_raw:
                continue
            try:
                frames = decoder.decode(av.Packet(data))
            except av.FFmpegError as error:
                logger.debug("%s: undecodable frame skipped (%s)", self.name, error)
                decoding_from_keyframe = False
                continue
            for frame in frames:
                self._hand_over(CapturedVideo(frame, captured_at))
