"""Counts the frames of a codec's shared stream, in /metrics.

Written only against the output contract (outputs/output.py), as the example of how
small an output is: a module with a `build`, one line in outputs/catalog.py and its
config section (`[frame_counter] codecs = ["h264"]`). It is also useful: the count
says whether the stream an RTSP or NVR client would get is flowing, without a viewer.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from peercam.fanout.hub import SubscriptionClosed
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline

logger = logging.getLogger(__name__)


class FrameCounter:
    def __init__(self, codec: str, pipeline: MediaPipeline, frames: Counter) -> None:
        self.codec = codec
        self._pipeline = pipeline
        self._frames = frames
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"frame counter of {self.codec}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._count(), name=f"frame-counter-{self.codec}")

    async def _count(self) -> None:
        async with self._pipeline.stream(self.codec) as subscription:
            try:
                while True:
                    frame = await subscription.get()
                    self._frames.labels(self.codec, str(frame.keyframe).lower()).inc()
            except SubscriptionClosed:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def build(context: OutputContext) -> list[Output]:
    """One counter per codec in `[frame_counter] codecs` that the pipeline makes."""
    codecs = context.config.frame_counter.codecs
    if not codecs:
        return []
    frames = Counter(
        "peercam_frame_counter_frames",
        "Shared frames seen by the frame counter output",
        ["codec", "keyframe"],
        registry=context.metrics.registry,
    )
    made = context.pipeline.codecs
    missing = [c for c in codecs if c not in made]
    if missing:
        logger.warning(
            "frame_counter: no %s stream (not in video.codecs or audio.codecs)", ", ".join(missing)
        )
    return [
        FrameCounter(c, context.pipeline, frames) for c in codecs if c in context.pipeline.codecs
    ]
