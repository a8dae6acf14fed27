"""Passthrough of a camera's own H.264: keyframe requests forwarded under the rate
limit, deferred rather than dropped, and never faked for a camera that cannot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from peercam.capture.source import Source
from peercam.encode.codecs import H264
from peercam.encode.native_stream import NativeStream
from peercam.media import CapturedEncoded, CapturedVideo, EncodedFrame
from peercam.metrics import Metrics
from tests.media_fixtures import h264_clip

IDR_WITHOUT_HEADERS = b"\x00\x00\x00\x01\x65\x88\x80\x10"


class FakeCamera(Source[CapturedVideo]):
    kind = "video"
    name = "fake"
    native_codec = "h264"

    def __init__(self, can_force: bool) -> None:
        self.can_force = can_force
        self.forced: list[float] = []

    @property
    def running(self) -> bool:
        return True

    def start(self, sink: Callable[[Any], None]) -> None:
        pass

    async def stop(self) -> None:
        pass

    def request_keyframe(self) -> bool:
        if self.can_force:
            self.forced.append(asyncio.get_running_loop().time())
        return self.can_force


def make_stream(camera: FakeCamera) -> tuple[NativeStream, list[EncodedFrame], Metrics]:
    published: list[EncodedFrame] = []
    metrics = Metrics()
    stream = NativeStream(H264, camera, published.append, metrics, keyframe_min_gap=0.3)
    stream.start()
    return stream, published, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_requests_reach_the_camera_at_most_once_per_gap_and_none_is_lost() -> None:
    camera = FakeCamera(can_force=True)
    stream, _, _ = make_stream(camera)
    for _ in range(5):
        stream.request_keyframe("rtcp")
    assert len(camera.forced) == 1
    await asyncio.sleep(0.1)
    stream.request_keyframe("new-viewer")  # inside the gap: deferred, not dropped
    assert len(camera.forced) == 1
    await asyncio.sleep(0.35)
    assert len(camera.forced) == 2
    assert camera.forced[1] - camera.forced[0] >= 0.29
    await stream.stop()


async def test_a_camera_that_cannot_force_is_not_credited_with_forced_keyframes(
    tmp_path: Any,
) -> None:
    camera = FakeCamera(can_force=False)
    stream, published, metrics = make_stream(camera)
    stream.request_keyframe("new-viewer")
    assert stream.keyframes.pending  # still waiting for the camera's own IDR
    clip = h264_clip(tmp_path / "c.h264", 160, 120, 30, seconds=0.2, gop=30).read_bytes()
    stream.feed(CapturedEncoded("h264", clip, True, 0.0))
    assert not stream.keyframes.pending
    assert sample(metrics, "peercam_keyframes_total", codec="h264", cause="natural") == 1
    assert sample(metrics, "peercam_keyframes_total", codec="h264", cause="requested") == 0
    # SPS/PPS learnt from that IDR are put before a later IDR that lacks them.
    stream.feed(CapturedEncoded("h264", IDR_WITHOUT_HEADERS, True, 0.033))
    assert published[1].data.endswith(IDR_WITHOUT_HEADERS)
    assert published[1].data[4] & 0x1F == 7  # starts with the SPS
    assert len(published[1].payloads) >= 1
    await stream.stop()
