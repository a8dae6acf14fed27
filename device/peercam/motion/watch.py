"""Feeds the motion detector from the camera's raw pictures, a few per second.

The camera hands pictures over on the event loop; turning one into a small grey
picture (a scale in swscale) happens in a thread, so the loop never waits on it. A
picture that arrives while the previous one is still being analysed is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

import av
import numpy as np

from peercam.config import Config, MotionConfig
from peercam.events import EventBus, Motion, MotionContinues
from peercam.media import CapturedPreview, CapturedVideo
from peercam.metrics import Metrics
from peercam.motion.detector import Luma, MotionDetector
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline

logger = logging.getLogger(__name__)

GREY_WIDTH = 160


def grey(picture: av.VideoFrame) -> Luma:
    height = max(2, round(picture.height * GREY_WIDTH / picture.width / 2) * 2)
    small = picture.reformat(width=GREY_WIDTH, height=height, format="gray")
    return np.asarray(small.to_ndarray(), dtype=np.uint8)


class MotionWatch:
    def __init__(
        self,
        config: MotionConfig,
        pipeline: MediaPipeline,
        events: EventBus,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.pipeline = pipeline
        self.events = events
        self.detector = MotionDetector(config, self._announce, self._goes_on)
        self._interval = 1.0 / config.fps
        self._last_taken = float("-inf")
        self._pending: CapturedVideo | CapturedPreview | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pictures = AsyncExitStack()

    @property
    def name(self) -> str:
        return "motion detection"

    async def start(self) -> None:
        if not await self._pictures.enter_async_context(self.pipeline.pictures(self._offer)):
            logger.warning("motion detection needs a camera; none is configured")
            return
        self._task = asyncio.create_task(self._analyse(), name="motion")
        logger.info("motion detection on, %.0f pictures a second", self.config.fps)

    def _offer(self, captured: CapturedVideo | CapturedPreview) -> None:
        if captured.captured_at - self._last_taken < self._interval or self._pending is not None:
            return
        self._last_taken = captured.captured_at
        self._pending = captured
        self._wake.set()

    async def _analyse(self) -> None:
        described = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            captured = self._pending
            if captured is None:
                continue
            if not described:
                image = captured.image
                kind = (
                    "low-resolution stream" if isinstance(captured, CapturedPreview) else "frames"
                )
                logger.info(
                    "motion: analysing the camera's %s, %dx%d", kind, image.width, image.height
                )
                described = True
            try:
                luma = await asyncio.to_thread(grey, captured.image)
            except (ValueError, av.FFmpegError) as error:
                logger.warning("motion: picture skipped: %s", error)
                continue
            finally:
                self._pending = None
            reading = self.detector.feed(luma, captured.captured_at)
            self.metrics.motion_pictures.labels("moving" if reading.moving else "still").inc()

    def apply_settings(self, config: Config) -> None:
        """Thresholds, cool-down and masks apply from the next picture; the rate and
        on/off are read at start (settings/impact.py)."""
        self.config = config.motion
        self.detector.use(config.motion)
        logger.info(
            "motion: threshold %d, area %.3f, %d masks", config.motion.threshold,
            config.motion.min_area, len(config.motion.masks),
        )  # fmt: skip

    def _announce(self) -> None:
        self.events.publish(Motion(time.time(), "camera"))

    def _goes_on(self) -> None:
        self.events.publish(MotionContinues(time.time()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._pictures.aclose()


def build(context: OutputContext) -> list[Output]:
    """The watch, when `[motion]` is enabled."""
    motion = context.config.motion
    if not motion.enabled:
        return []
    return [MotionWatch(motion, context.pipeline, context.events, context.metrics)]
