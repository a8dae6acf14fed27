"""The shared encoder's life, against a real codec (libx264 at 160x120): frames fed in
come out published, encoded off the event loop; keyframe requests are honoured at most
once per gap and kept until then; stop ends the worker and a later start opens a fresh
codec; a codec that fails is logged and skipped, and never holds stop up."""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable

import av
import numpy as np
import pytest

from peercam.encode.backend import EncodedChunk, EncoderBackend
from peercam.encode.codecs import H264
from peercam.encode.shared_encoder import SharedEncoder
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.media import Captured, CapturedVideo, EncodedFrame, rtp_timestamp
from peercam.metrics import Metrics

WIDTH, HEIGHT, FPS = 160, 120, 15
# A GOP far longer than any test: every keyframe after the first one was asked for.
SETTINGS = VideoSettings(WIDTH, HEIGHT, FPS, 200_000, keyframe_interval=60.0)
WITHIN = 10.0  # generous bound on one encode, only so that a failure cannot hang
_rng = np.random.default_rng(18)


def picture() -> CapturedVideo:
    yuv = _rng.integers(16, 236, (HEIGHT * 3 // 2, WIDTH), dtype=np.uint8)
    return CapturedVideo(av.VideoFrame.from_ndarray(yuv, format="yuv420p"), time.monotonic())


class Watched(EncoderBackend):
    """libx264, noting the thread each call runs on, what it was asked, and its close."""

    def __init__(self, log: list[Watched]) -> None:
        self.codec = "h264"
        self._inner = PyAVVideoEncoder("h264", SETTINGS)
        self.threads: set[threading.Thread] = set()
        self.forced: list[bool] = []
        self.closed = False
        log.append(self)

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        self.threads.add(threading.current_thread())
        self.forced.append(force_keyframe)
        return self._inner.encode(captured, force_keyframe)

    def close(self) -> None:
        self.threads.add(threading.current_thread())
        self.closed = True
        self._inner.close()


class Failing(Watched):
    """Raises on the encodes whose (0-based) numbers are in `fail_on`."""

    def __init__(self, log: list[Watched], fail_on: set[int]) -> None:
        super().__init__(log)
        self._fail_on = fail_on
        self._calls = 0
        self.failed = threading.Event()

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        call, self._calls = self._calls, self._calls + 1
        if call in self._fail_on:
            self.forced.append(force_keyframe)
            self.failed.set()
            raise ValueError("the codec rejects this frame")
        return super().encode(captured, force_keyframe)


class Harness:
    def __init__(
        self, make_backend: Callable[[], EncoderBackend], keyframe_min_gap: float = 0.0
    ) -> None:
        self.metrics = Metrics()
        self.published: asyncio.Queue[EncodedFrame] = asyncio.Queue()
        self.encoder = SharedEncoder(
            H264, make_backend, self.published.put_nowait, self.metrics, keyframe_min_gap
        )

    async def encode_one(self) -> EncodedFrame:
        """Feed one picture and wait for what comes out of it."""
        self.encoder.feed(picture())
        return await asyncio.wait_for(self.published.get(), WITHIN)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def watched(log: list[Watched]) -> Callable[[], EncoderBackend]:
    return functools.partial(Watched, log)


async def test_frames_fed_after_start_are_encoded_off_the_loop_and_published() -> None:
    backends: list[Watched] = []
    harness = Harness(watched(backends))
    encoder = harness.encoder
    assert not encoder.running
    encoder.start()
    assert encoder.running
    assert harness.sample("peercam_encoder_running", codec="h264") == 1
    captured = picture()
    encoder.feed(captured)
    first = await asyncio.wait_for(harness.published.get(), WITHIN)
    rest = [await harness.encode_one() for _ in range(4)]
    await encoder.stop()

    assert first.codec == "h264"
    assert first.keyframe  # a fresh codec starts with one
    assert first.captured_at == captured.captured_at
    assert first.rtp_timestamp == rtp_timestamp(captured.captured_at, 90_000)
    assert first.data and first.payloads  # packetized once, in the encoder's thread
    assert [f.sequence for f in [first, *rest]] == [0, 1, 2, 3, 4]
    assert not any(f.keyframe for f in rest)  # nobody asked for one
    assert harness.sample("peercam_encoded_frames_total", codec="h264") == 5
    # One codec, run on one thread that is not the event loop's.
    assert len(backends) == 1
    assert len(backends[0].threads) == 1
    assert threading.current_thread() not in backends[0].threads


async def test_a_keyframe_request_is_honoured_on_the_next_frame() -> None:
    harness = Harness(watched([]))
    harness.encoder.start()
    assert (await harness.encode_one()).keyframe
    assert not (await harness.encode_one()).keyframe
    harness.encoder.request_keyframe("rtcp")
    assert (await harness.encode_one()).keyframe
    assert not (await harness.encode_one()).keyframe  # one request, one keyframe
    await harness.encoder.stop()
    assert harness.sample("peercam_keyframe_requests_total", codec="h264", reason="rtcp") == 1
    assert harness.sample("peercam_keyframes_total", codec="h264", cause="requested") == 1
    assert harness.sample("peercam_keyframes_total", codec="h264", cause="natural") == 1


async def test_requests_inside_the_gap_wait_for_it_and_are_not_lost() -> None:
    backends: list[Watched] = []
    harness = Harness(watched(backends), keyframe_min_gap=3600.0)
    encoder = harness.encoder
    encoder.start()
    await harness.encode_one()  # the codec's own first keyframe does not start the gap
    encoder.request_keyframe("new-viewer")
    assert (await harness.encode_one()).keyframe
    for reason in ("rtcp", "new-viewer", "overflow"):
        encoder.request_keyframe(reason)
    later = [await harness.encode_one() for _ in range(5)]
    assert not any(f.keyframe for f in later)  # inside the gap: not forced
    assert encoder.keyframes.pending  # ...but kept
    encoder.keyframes.min_gap = 0.0  # the gap is over
    assert (await harness.encode_one()).keyframe
    assert not encoder.keyframes.pending
    await encoder.stop()
    assert backends[0].forced == [False, True, False, False, False, False, False, True]


async def test_stop_closes_the_codec_and_ends_its_thread() -> None:
    backends: list[Watched] = []
    harness = Harness(watched(backends))
    encoder = harness.encoder
    encoder.start()
    await harness.encode_one()
    await asyncio.wait_for(encoder.stop(), WITHIN)
    assert not encoder.running
    assert harness.sample("peercam_encoder_running", codec="h264") == 0
    backend = backends[0]
    assert backend.closed
    (thread,) = backend.threads  # closed on the thread that encoded
    await asyncio.to_thread(thread.join, WITHIN)
    assert not thread.is_alive()
    await encoder.stop()  # a second stop does nothing
    assert len(backends) == 1


async def test_a_start_after_stop_opens_a_fresh_codec() -> None:
    backends: list[Watched] = []
    harness = Harness(watched(backends))
    encoder = harness.encoder
    encoder.start()
    encoder.start()  # already running: no second worker
    await harness.encode_one()
    await harness.encode_one()
    await encoder.stop()
    encoder.start()
    assert encoder.running
    again = await harness.encode_one()
    assert again.keyframe  # the new codec starts at a keyframe
    await encoder.stop()
    assert len(backends) == 2
    assert all(b.closed for b in backends)
    assert backends[0].threads.isdisjoint(backends[1].threads)  # a worker thread per run


async def test_a_frame_the_codec_rejects_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backends: list[Watched] = []
    harness = Harness(functools.partial(Failing, backends, {1}))
    encoder = harness.encoder
    encoder.start()
    assert (await harness.encode_one()).keyframe
    (failing,) = backends
    assert isinstance(failing, Failing)
    encoder.request_keyframe("rtcp")
    with caplog.at_level(logging.ERROR, logger="peercam.encode.shared_encoder"):
        encoder.feed(picture())  # rejected
        assert await asyncio.to_thread(failing.failed.wait, WITHIN)
        after = await harness.encode_one()
    failures = [r for r in caplog.records if "failed on a frame" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is ValueError
    assert encoder.running  # the stream goes on
    # The request the failed frame was to answer is still owed, and paid next.
    assert after.keyframe
    assert backends[0].forced == [False, True, True]
    await asyncio.wait_for(encoder.stop(), WITHIN)
    assert not encoder.running
    assert backends[0].closed


async def test_a_codec_that_cannot_open_is_logged_and_stop_still_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: queue.Queue[float] = queue.Queue()

    def unavailable() -> EncoderBackend:
        attempts.put(time.monotonic())
        raise RuntimeError("no such encoder")

    harness = Harness(unavailable)
    encoder = harness.encoder
    with caplog.at_level(logging.ERROR, logger="peercam.encode.shared_encoder"):
        encoder.start()
        for _ in range(2):
            encoder.feed(picture())
            await asyncio.to_thread(attempts.get, timeout=WITHIN)  # tried again on each frame
        # The first failure was logged before the second frame was taken; the second
        # may still be on its way when stop cancels the run.
        failures = [r for r in caplog.records if "failed on a frame" in r.getMessage()]
        await asyncio.wait_for(encoder.stop(), WITHIN)
    assert not encoder.running
    assert harness.published.empty()
    assert len(failures) in (1, 2)
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in failures)


class FailingClose(Watched):
    def close(self) -> None:
        super().close()
        raise OSError("the device went away while closing")


async def test_a_codec_that_fails_to_close_is_logged_and_the_encoder_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backends: list[Watched] = []
    harness = Harness(functools.partial(FailingClose, backends))
    encoder = harness.encoder
    encoder.start()
    await harness.encode_one()
    with caplog.at_level(logging.ERROR, logger="peercam.encode.shared_encoder"):
        await asyncio.wait_for(encoder.stop(), WITHIN)  # must not raise
    assert not encoder.running
    assert harness.sample("peercam_encoder_running", codec="h264") == 0
    failures = [r for r in caplog.records if "closing the codec failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    encoder.start()  # and it can run again
    assert (await harness.encode_one()).keyframe
    await encoder.stop()
