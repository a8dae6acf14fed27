"""The camera's current picture as a JPEG, whether or not anything is streaming."""

from __future__ import annotations

import asyncio

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
