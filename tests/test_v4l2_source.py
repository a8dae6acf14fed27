"""The V4L2 camera path with everything but the device open: real H.264 and MJPEG
streams through the same demux/decode code, unplug and return included."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from peercam.capture import timecode
from peercam.capture.v4l2_camera import V4L2Camera, V4L2Settings
from peercam.h264_bitstream import IDR, PPS, SPS, ParameterSetRepeater, nal_type, nal_units
from peercam.media import CapturedEncoded, CapturedVideo
from tests.media_fixtures import h264_clip, mjpeg_clip


class Collected:
    def __init__(self) -> None:
        self.items: list[CapturedVideo | CapturedEncoded] = []

    def __call__(self, item: CapturedVideo | CapturedEncoded) -> None:
        self.items.append(item)

    def encoded(self) -> list[CapturedEncoded]:
        return [i for i in self.items if isinstance(i, CapturedEncoded)]

    def raw(self) -> list[CapturedVideo]:
        return [i for i in self.items if isinstance(i, CapturedVideo)]


async def run_camera(camera: V4L2Camera, seconds: float, raw: bool, encoded: bool) -> Collected:
    sink = Collected()
    camera.set_outputs(raw=raw, encoded=encoded)
    camera.start(sink)
    await asyncio.sleep(seconds)
    await camera.stop()
    return sink


def file_camera(path: Path, fmt: str, **kwargs: Any) -> V4L2Camera:
    settings = V4L2Settings(str(path), fmt, 320, 240, 30)
    return V4L2Camera(
        settings, opener=lambda: av.open(str(path)), pace_by_timestamps=True, **kwargs
    )


def types(access_unit: bytes) -> list[int]:
    return [nal_type(n) for n in nal_units(access_unit) if n]


async def test_h264_camera_passes_packets_through_flagging_idrs(tmp_path: Path) -> None:
    clip = h264_clip(tmp_path / "cam.h264", 320, 240, 30, seconds=3, gop=15)
    camera = file_camera(clip, "h264")
    assert camera.native_codec == "h264"
    sink = await run_camera(camera, 1.3, raw=False, encoded=True)
    frames = sink.encoded()
    assert 30 <= len(frames) <= 45  # paced at 30 fps, not read as fast as the disk allows
    assert not sink.raw()  # nothing decoded when no software encoder needs it
    assert frames[0].keyframe and frames[0].data.startswith(b"\x00\x00\x00\x01")
    keyframes = [i for i, f in enumerate(frames) if f.keyframe]
    assert keyframes[:3] == [0, 15, 30]
    assert all((IDR in types(f.data)) == f.keyframe for f in frames)
    # This camera sends SPS/PPS once; the repeater puts them before every later IDR.
    assert SPS not in types(frames[15].data)
    repeater = ParameterSetRepeater()
    repaired = [repeater.process(f.data) for f in frames]
    for index in keyframes:
        assert types(repaired[index])[:2] == [SPS, PPS]


async def test_h264_camera_also_decodes_when_raw_frames_are_wanted(tmp_path: Path) -> None:
    clip = h264_clip(tmp_path / "cam.h264", 320, 240, 30, seconds=3, gop=15)
    sink = await run_camera(file_camera(clip, "h264"), 1.0, raw=True, encoded=True)
    raw = sink.raw()
    assert len(raw) >= 20 and len(sink.encoded()) >= 20
    picture = raw[-1].image
    assert (picture.width, picture.height) == (320, 240)
    assert timecode.read(picture.to_ndarray(format="gray").astype(np.uint8)) is not None


async def test_mjpeg_camera_frames_are_decoded_once_for_the_encoders(tmp_path: Path) -> None:
    clip = mjpeg_clip(tmp_path / "cam.mkv", 320, 240, 30, seconds=2)
    camera = file_camera(clip, "mjpeg")
    assert camera.native_codec is None
    sink = await run_camera(camera, 1.0, raw=True, encoded=False)
    raw = sink.raw()
    assert 25 <= len(raw) <= 36
    assert not sink.encoded()
    picture = raw[-1].image
    assert picture.format.name.startswith("yuvj")  # MJPEG's own format; encoders convert
    assert timecode.read(picture.to_ndarray(format="gray").astype(np.uint8)) is not None


class FailingAfter:
    """A container whose demux fails like an unplugged camera after `packets`."""

    def __init__(self, inner: Any, packets: int) -> None:
        self.inner, self.packets = inner, packets
        self.streams = inner.streams

    def demux(self, stream: Any) -> Any:
        for index, packet in enumerate(self.inner.demux(stream)):
            if index == self.packets:
                raise OSError(5, "Input/output error")
            yield packet

    def close(self) -> None:
        self.inner.close()


async def test_unplugged_camera_is_reported_retried_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = h264_clip(tmp_path / "cam.h264", 320, 240, 30, seconds=3, gop=15)
    opens: list[float] = []

    def opener() -> Any:
        opens.append(time.monotonic())
        if len(opens) in (2, 3):  # gone for two attempts after the first unplug
            raise OSError(19, "No such device")
        return FailingAfter(av.open(str(clip)), packets=12)

    settings = V4L2Settings("/dev/video9", "h264", 320, 240, 30)
    camera = V4L2Camera(settings, opener=opener, pace_by_timestamps=True, backoff=(0.1, 0.3))
    with caplog.at_level(logging.INFO, logger="peercam.capture.v4l2_camera"):
        sink = await run_camera(camera, 2.0, raw=False, encoded=True)
    log = caplog.text
    assert "failed" in log and "Input/output error" in log
    assert "unavailable" in log and "No such device" in log
    assert len(opens) >= 4
    assert opens[2] - opens[1] >= 0.09 and opens[3] - opens[2] >= 0.19  # backoff grows
    # Frames before the unplug and again after the return, each run from an IDR.
    frames = sink.encoded()
    assert len(frames) >= 24
    assert sum(f.keyframe for f in frames) >= 2
