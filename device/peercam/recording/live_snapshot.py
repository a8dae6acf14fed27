"""The camera's current picture as a JPEG, whether or not anything is streaming."""

from __future__ import annotations

import asyncio
import time

from peercam.encode.codecs import BY_NAME
from peercam.fanout.hub import SubscriptionClosed
from peercam.pipeline import MediaPipeline
from peercam.recording import snapshot
from peercam.recording.recorder import Recorder

WAIT_FOR_KEYFRAME = 5.0  # seconds; the encoder answers a keyframe request in ~1 frame


class NoPicture(Exception):
    pass


async def current_jpeg(pipeline: MediaPipeline, recorder: Recorder | None) -> bytes:
    """From the recorder's pre-roll when it runs (no extra work); otherwise as a
    viewer would get it: subscribe, take the first (requested) keyframe, hang up."""
    if recorder is not None:
        recent = await recorder.snapshot()
        if recent is not None:
            return recent
    codec = next((c for c in pipeline.codecs if BY_NAME[c].kind == "video"), None)
    if codec is None:
        raise NoPicture("no video codec to take a picture from")
    async with pipeline.stream(codec) as subscription:
        try:
            frame = await asyncio.wait_for(subscription.get(), WAIT_FOR_KEYFRAME)
        except (TimeoutError, SubscriptionClosed):
            raise NoPicture("the camera delivered no picture in time") from None
    try:
        return await asyncio.to_thread(snapshot.latest_jpeg, [frame])
    except snapshot.SnapshotError as error:
        raise NoPicture(str(error)) from None


class SharedSnapshot:
    """One picture for everyone who asks within `max_age`: NVRs and dashboards poll a
    snapshot URL, several at once, and each fresh picture costs every viewer of the
    stream a keyframe. Callers arriving while a picture is being taken wait for it."""

    def __init__(
        self, pipeline: MediaPipeline, recorder: Recorder | None = None, max_age: float = 1.0
    ) -> None:
        self._pipeline = pipeline
        self._recorder = recorder
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._latest: tuple[float, bytes] | None = None

    async def jpeg(self) -> bytes:
        """Raises NoPicture."""
        async with self._lock:
            latest = self._latest
            if latest is not None and time.monotonic() - latest[0] < self._max_age:
                return latest[1]
            picture = await current_jpeg(self._pipeline, self._recorder)
            self._latest = (time.monotonic(), picture)
            return picture
