"""The shared encoder: one per codec in use, its output published to every viewer.

The asyncio side takes captured frames, decides when a keyframe is due and publishes
what comes out; the codec itself runs in a worker thread of its own, so the event loop
never waits on an encode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from peercam.encode.backend import EncoderBackend
from peercam.encode.codecs import CodecSpec
from peercam.encode.keyframes import KeyframePolicy
from peercam.encode.producer import Delivered, Takes
from peercam.encode.sample_clock import SampleClock
from peercam.media import (
    Captured,
    CapturedAudio,
    CapturedPreview,
    CapturedVideo,
    EncodedFrame,
    rtp_timestamp,
)
from peercam.metrics import Metrics

logger = logging.getLogger(__name__)


class _Worker:
    """One run of the encoder: a thread, the codec it opened, and its frame counter.

    A fresh worker per start means a restart never shares a codec with a stop that is
    still finishing.
    """

    def __init__(
        self, spec: CodecSpec, make_backend: Callable[[], EncoderBackend], name: str
    ) -> None:
        self.spec = spec
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{name}")
        self._make_backend = make_backend
        self._backend: EncoderBackend | None = None
        self._packetizer = spec.packetizer()
        self._sequence = 0
        self._samples = SampleClock(spec.clock_rate)

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedFrame]:
        """Runs in the worker thread: encode, then build the RTP payloads once."""
        if self._backend is None:
            self._backend = self._make_backend()
        frames = []
        for chunk in self._backend.encode(captured, force_keyframe):
            if chunk.samples:
                stamp = self._samples.stamp(captured.captured_at, chunk.samples)
            else:
                stamp = rtp_timestamp(captured.captured_at, self.spec.clock_rate)
            frames.append(
                EncodedFrame(
                    codec=self.spec.name,
                    data=chunk.data,
                    keyframe=chunk.keyframe,
                    captured_at=captured.captured_at,
                    rtp_timestamp=stamp,
                    payloads=self._packetizer.payloads(chunk.data),
                    sequence=self._sequence,
                )
            )
            self._sequence += 1
        return frames

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class SharedEncoder:
    """A Producer that encodes raw frames (or, for a smaller layer, the camera's own
    low-resolution pictures). `name` labels its logs and metrics ("h264", "h264/sub");
    `max_fps` (0: every frame) thins the camera's rate for a layer that needs less."""

    stamps_frames = True

    def __init__(
        self,
        spec: CodecSpec,
        make_backend: Callable[[], EncoderBackend],
        publish: Callable[[EncodedFrame], None],
        metrics: Metrics,
        keyframe_min_gap: float = 0.5,
        *,
        name: str = "",
        takes: Takes = Takes.RAW,
        max_fps: float = 0.0,
    ) -> None:
        self.spec = spec
        self.name = name or spec.name
        self.takes = takes
        self._interval = 1 / max_fps if max_fps > 0 else 0.0
        self._next_due = 0.0
        self._make_backend = make_backend
        self._publish = publish
        self._metrics = metrics
        self.keyframes = KeyframePolicy(keyframe_min_gap)
        # Video keeps only the newest frame: encoding a stale one only adds latency.
        # Audio must not lose frames to a short stall, so it keeps a few.
        self._pending: deque[Captured] = deque(maxlen=1 if spec.kind == "video" else 10)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._worker: _Worker | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is not None:
            return
        self._worker = _Worker(self.spec, self._make_backend, self.name)
        self._next_due = 0.0
        self._task = asyncio.create_task(self._run(self._worker), name=f"encoder-{self.name}")
        self._metrics.encoder_running.labels(self.name).set(1)
        logger.info("%s encoder started", self.name)

    async def stop(self) -> None:
        task, worker = self._task, self._worker
        if task is None or worker is None:
            return
        self._task = self._worker = None
        self._pending.clear()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        try:
            # The close job queues behind any encode still running in the worker thread.
            await asyncio.get_running_loop().run_in_executor(worker.executor, worker.close)
        except Exception:
            # Stopped all the same: a stop that raised would leave the camera and the
            # other idle encoders that release_idle stops after this one running.
            logger.exception("%s encoder: closing the codec failed", self.name)
        finally:
            worker.executor.shutdown(wait=False)
            if self._task is None:
                self._metrics.encoder_running.labels(self.name).set(0)
        logger.info("%s encoder stopped", self.name)

    def feed(self, captured: Delivered) -> None:
        if self._task is None:
            return
        if isinstance(captured, CapturedPreview):
            # Encoded as a picture like any other; only a layer that takes the preview
            # is handed one (the pipeline routes by `takes`).
            captured = CapturedVideo(captured.image, captured.captured_at)
        elif not isinstance(captured, CapturedVideo | CapturedAudio):
            return
        if self._interval and not self._due(captured.captured_at):
            return
        if len(self._pending) == self._pending.maxlen:
            self._metrics.skipped_captures.labels(self.name).inc()
        self._pending.append(captured)
        self._wakeup.set()

    def _due(self, captured_at: float) -> bool:
        """Whether a frame captured at `captured_at` keeps the layer near `max_fps`.
        A quarter interval of slack: a camera's frames jitter, and one arriving a
        millisecond early must not be skipped for the next, which would halve the rate
        of a layer at an exact divisor of the camera's."""
        if captured_at < self._next_due - self._interval / 4:
            return False
        if captured_at - self._next_due < self._interval:
            self._next_due += self._interval
        else:  # the first frame, or the first after a stall: count from this one
            self._next_due = captured_at + self._interval
        return True

    def request_keyframe(self, reason: str) -> None:
        if not self.spec.has_keyframes:
            return
        self._metrics.keyframe_requests.labels(self.name, reason).inc()
        self.keyframes.request()

    async def _run(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            captured = self._pending.popleft()
            now = time.monotonic()
            force = self.keyframes.should_force(now)
            try:
                frames = await loop.run_in_executor(worker.executor, worker.encode, captured, force)
            except Exception:
                # A frame the codec rejects must not end the stream for everyone.
                logger.exception("%s encoder failed on a frame; skipping it", self.name)
                continue
            for frame in frames:
                account_frame(self._metrics, self.name, self.spec, frame, force, now)
                if frame.keyframe and self.spec.has_keyframes:
                    self.keyframes.keyframe_sent(now, force)
                self._publish(frame)


def account_frame(
    metrics: Metrics, name: str, spec: CodecSpec, frame: EncodedFrame, forced: bool, now: float
) -> None:
    """`name`: the route's ("h264", "h264/sub")."""
    metrics.frame_encoded(name, len(frame.data), now, frame.captured_at)
    if frame.keyframe and spec.has_keyframes:
        cause = "requested" if forced else "natural"
        metrics.keyframes.labels(name, cause).inc()
