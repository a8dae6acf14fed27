"""The pipeline starts encoders and cameras on demand and stops what nobody needs:
against a fake camera and fake codecs, so that every start and stop is counted. An
encoder stops when its last viewer has left and release_idle() runs; the camera then
lingers for `linger` seconds (a returning viewer finds it still open) and stops after;
a camera feeding two codecs stops only once both are idle; stop() ends everything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import av
import numpy as np

from peercam.capture.source import Source
from peercam.encode.backend import EncodedChunk, EncoderBackend
from peercam.fanout.hub import Subscription
from peercam.media import Captured, CapturedEncoded, CapturedVideo, EncodedFrame, Kind
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline

WITHIN = 10.0  # generous bound, only so that a failure cannot hang


class FakeCamera(Source[CapturedVideo]):
    """Counts its starts and stops; pictures are handed in by the test."""

    kind: Kind = "video"
    name = "fake camera"

    def __init__(self) -> None:
        self._running = False
        self.starts = 0
        self.stops = 0
        self.sink: Callable[[CapturedVideo | CapturedEncoded], None] | None = None
        self.outputs: list[tuple[bool, bool, bool]] = []

    @property
    def running(self) -> bool:
        return self._running

    def start(self, sink: Callable[[CapturedVideo | CapturedEncoded], None]) -> None:
        self._running = True
        self.starts += 1
        self.sink = sink

    async def stop(self) -> None:
        self._running = False
        self.stops += 1
        self.sink = None

    def set_outputs(self, raw: bool, encoded: bool, preview: bool = False) -> None:
        self.outputs.append((raw, encoded, preview))

    @property
    def raw_wanted(self) -> bool:
        return self.outputs[-1][0]

    def capture(self) -> None:
        assert self.sink is not None, "the camera is not running"
        yuv = np.full((120 * 3 // 2, 160), 128, dtype=np.uint8)
        self.sink(CapturedVideo(av.VideoFrame.from_ndarray(yuv, format="yuv420p"), 0.0))


class FakeCodec(EncoderBackend):
    """One chunk per picture: a keyframe when asked for (and the first)."""

    def __init__(self, codec: str, made: list[FakeCodec]) -> None:
        self.codec = codec
        self.encoded = 0
        self.closed = False
        made.append(self)

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        self.encoded += 1
        return [EncodedChunk(b"picture", force_keyframe or self.encoded == 1)]

    def close(self) -> None:
        self.closed = True


class Rig:
    """A pipeline over one fake camera with fake H.264 and VP8 codecs."""

    def __init__(self, linger: float = 0.0, codecs: tuple[str, ...] = ("h264", "vp8")) -> None:
        self.camera = FakeCamera()
        self.made: list[FakeCodec] = []
        self.pipeline = MediaPipeline(
            {"video": self.camera},
            {codec: self._factory(codec) for codec in codecs},
            Metrics(),
            keyframe_min_gap=0.0,
            queue_frames=10,
            linger=linger,
        )

    def _factory(self, codec: str) -> Callable[[], EncoderBackend]:
        return lambda: FakeCodec(codec, self.made)

    def running(self, codec: str) -> bool:
        return self.pipeline.producer(codec).running

    def codecs(self, codec: str) -> list[FakeCodec]:
        return [made for made in self.made if made.codec == codec]

    async def release(self) -> set[asyncio.Task[object]]:
        """release_idle(), and what it left running (the camera's linger)."""
        before = asyncio.all_tasks()
        await self.pipeline.release_idle()
        return {task for task in asyncio.all_tasks() - before if not task.done()}


async def next_frame(subscription: Subscription, camera: FakeCamera) -> EncodedFrame:
    getter = asyncio.ensure_future(subscription.get())
    await asyncio.sleep(0)  # the subscriber starts reading (and asks for a keyframe)
    camera.capture()
    return await asyncio.wait_for(getter, WITHIN)


async def wait_out(tasks: set[asyncio.Task[object]]) -> None:
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WITHIN)


async def test_the_first_subscriber_starts_the_encoder_and_the_camera() -> None:
    rig = Rig()
    assert not rig.camera.running and not rig.running("h264")
    first = rig.pipeline.subscribe("h264")
    assert rig.running("h264")
    assert rig.camera.running and rig.camera.starts == 1
    assert rig.camera.raw_wanted  # a software encoder needs raw pictures
    assert not rig.running("vp8")  # nobody asked for it
    frame = await next_frame(first, rig.camera)
    assert frame.codec == "h264" and frame.keyframe
    second = rig.pipeline.subscribe("h264")
    assert rig.camera.starts == 1  # already open
    assert len(rig.codecs("h264")) == 1  # one encoder for both viewers
    assert await next_frame(second, rig.camera) is await first.get()  # the same frame
    await rig.pipeline.stop()


async def test_an_encoder_stops_once_its_last_viewer_left_and_release_idle_ran() -> None:
    rig = Rig()
    first, second = rig.pipeline.subscribe("h264"), rig.pipeline.subscribe("h264")
    await next_frame(first, rig.camera)  # the codec is opened by its first picture
    first.close()
    await rig.release()
    assert rig.running("h264")  # one viewer is left
    assert rig.camera.running
    second.close()
    assert rig.running("h264")  # closing is synchronous; stopping waits for release_idle
    await rig.release()
    assert not rig.running("h264")
    (codec,) = rig.codecs("h264")
    assert codec.closed
    assert not rig.camera.raw_wanted
    assert not rig.camera.running and rig.camera.stops == 1  # linger 0: at once
    await rig.pipeline.stop()


async def test_the_stream_block_releases_on_leaving() -> None:
    rig = Rig()
    async with rig.pipeline.stream("vp8") as subscription:
        assert rig.running("vp8") and rig.camera.running
        await next_frame(subscription, rig.camera)
    assert not rig.running("vp8")
    assert not rig.camera.running
    await rig.pipeline.stop()


async def test_with_linger_the_camera_stays_open_that_long_then_stops() -> None:
    linger = 0.3
    rig = Rig(linger=linger)
    subscription = rig.pipeline.subscribe("h264")
    await next_frame(subscription, rig.camera)
    subscription.close()
    left_at = time.monotonic()
    lingering = await rig.release()
    assert not rig.running("h264")  # the encoder does not linger
    assert rig.codecs("h264")[0].closed
    assert rig.camera.running and rig.camera.stops == 0
    assert lingering, "nothing is waiting to stop the camera"
    await wait_out(lingering)
    assert not rig.camera.running and rig.camera.stops == 1
    assert time.monotonic() - left_at >= linger - 0.01
    await rig.pipeline.stop()


async def test_a_subscriber_returning_within_linger_keeps_the_camera_open() -> None:
    rig = Rig(linger=0.3)
    subscription = rig.pipeline.subscribe("h264")
    await next_frame(subscription, rig.camera)
    subscription.close()
    lingering = await rig.release()
    assert lingering
    back = rig.pipeline.subscribe("h264")  # a page refresh
    assert rig.running("h264")  # a new encoder...
    assert rig.camera.starts == 1  # ...on the camera that never closed
    await wait_out(lingering)  # the linger ran out with a viewer back
    assert rig.camera.running and rig.camera.stops == 0
    assert rig.camera.raw_wanted
    assert (await next_frame(back, rig.camera)).keyframe
    assert len(rig.codecs("h264")) == 2
    # Leaving again starts a new linger, which does stop the camera.
    back.close()
    lingering = await rig.release()
    assert lingering and rig.camera.running
    await wait_out(lingering)
    assert not rig.camera.running and rig.camera.stops == 1
    await rig.pipeline.stop()


async def test_a_camera_feeding_two_codecs_stops_only_when_both_are_idle() -> None:
    rig = Rig()
    h264, vp8 = rig.pipeline.subscribe("h264"), rig.pipeline.subscribe("vp8")
    getters = asyncio.gather(h264.get(), vp8.get())
    await asyncio.sleep(0)
    rig.camera.capture()
    both = await asyncio.wait_for(getters, WITHIN)
    assert [frame.codec for frame in both] == ["h264", "vp8"]  # one picture, two encoders
    assert rig.camera.starts == 1
    h264.close()
    await rig.release()
    assert not rig.running("h264") and rig.running("vp8")
    assert rig.camera.running and rig.camera.stops == 0
    assert rig.camera.raw_wanted  # VP8 still encodes
    assert (await next_frame(vp8, rig.camera)).codec == "vp8"
    vp8.close()
    await rig.release()
    assert not rig.running("vp8")
    assert not rig.camera.running and rig.camera.stops == 1
    await rig.pipeline.stop()


async def test_stop_ends_encoders_and_camera_even_with_viewers_left() -> None:
    rig = Rig(linger=60.0)
    h264, vp8 = rig.pipeline.subscribe("h264"), rig.pipeline.subscribe("vp8")
    await next_frame(h264, rig.camera)
    await next_frame(vp8, rig.camera)
    await asyncio.wait_for(rig.pipeline.stop(), WITHIN)
    assert not rig.running("h264") and not rig.running("vp8")
    assert all(codec.closed for codec in rig.made) and len(rig.made) == 2
    assert not rig.camera.running and rig.camera.stops == 1


async def test_stop_does_not_wait_out_a_lingering_camera() -> None:
    rig = Rig(linger=60.0)
    subscription = rig.pipeline.subscribe("h264")
    await next_frame(subscription, rig.camera)
    subscription.close()
    lingering = await rig.release()
    assert lingering and rig.camera.running
    await asyncio.wait_for(rig.pipeline.stop(), WITHIN)  # not 60 s
    assert not rig.camera.running and rig.camera.stops == 1
    assert all(task.done() for task in lingering)
