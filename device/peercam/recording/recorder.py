"""Event clips: the pre-roll of the shared stream, plus what follows a trigger.

The recorder is one more subscriber of the fan-out hubs, like a viewer: it receives
the very frames viewers are sent (H.264 video, Opus audio), keeps the last seconds
in a `Preroll`, and on a trigger (a ring, motion, a manual request) copies them into
a clip that grows until `post_seconds` after the last trigger. The clip is then
muxed to MP4 in a thread and stored; every page hears of it on the push channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peercam.config import CameraConfig, Config, ConfigError, RecordingConfig, VideoConfig
from peercam.encode.codecs import H264, OPUS
from peercam.events import (
    ClipSaved,
    Event,
    EventBus,
    Motion,
    MotionContinues,
    RecordingState,
    RecordingSwitch,
    Ring,
)
from peercam.fanout.hub import Subscription, SubscriptionClosed
from peercam.media import EncodedFrame
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.recording import snapshot
from peercam.recording.clip_file import ClipError, write_mp4
from peercam.recording.clip_store import ClipRecord, ClipStore, new_clip_id
from peercam.recording.preroll import Preroll
from peercam.service.private_file import write_private
from peercam.service.state_dir import state_directory

logger = logging.getLogger(__name__)

VIDEO_CODEC = H264.name  # what MP4 and every browser's <video> play
AUDIO_CODEC = OPUS.name
THUMBNAIL_WIDTH = 640


@dataclass
class ActiveClip:
    id: str
    trigger: str
    event_at: float  # wall clock
    event_monotonic: float
    end_at: float  # monotonic: stop taking frames captured after this
    limit_at: float  # monotonic: never past this, however often it is extended
    frames: list[EncodedFrame]
    triggers: list[str] = field(default_factory=list)
    thumbnail: bytes | None = None


class Recorder:
    def __init__(
        self,
        config: RecordingConfig,
        pipeline: MediaPipeline,
        events: EventBus,
        store: ClipStore,
        fps: int,
        switched_off_file: Path | None = None,
        pictures: tuple[CameraConfig, VideoConfig] | None = None,
    ) -> None:
        """`pictures`: the camera and video settings its clips are made from."""
        self.config = config
        # Its presence keeps the switch off across restarts: an owner who turned
        # recording off in Home Assistant does not expect a reboot to turn it on.
        self._switched_off_file = switched_off_file
        self.pipeline = pipeline
        self.events = events
        self.store = store
        self.fps = fps
        self._pictures = pictures
        self.preroll = Preroll(config.preroll_seconds)
        self.active: ActiveClip | None = None
        # Home Assistant's switch: off, triggers make no clip (the pre-roll still runs,
        # so a clip switched back on has its seconds before).
        self.switched_on = True
        self._streams = AsyncExitStack()
        self._tasks: set[asyncio.Task[None]] = set()
        self._bus: asyncio.Queue[Event] | None = None

    @property
    def available(self) -> bool:
        return VIDEO_CODEC in self.pipeline.codecs

    @property
    def name(self) -> str:
        return "event recorder"

    async def start(self) -> None:
        if self._switched_off_file is not None:
            self.switched_on = not await asyncio.to_thread(self._switched_off_file.exists)
        self.events.publish(RecordingState(self.switched_on))
        if not self.available:
            logger.warning("recording needs H.264 in video.codecs; no clips will be made")
            return
        codecs = [VIDEO_CODEC] + ([AUDIO_CODEC] if AUDIO_CODEC in self.pipeline.codecs else [])
        for codec in codecs:
            subscription = await self._streams.enter_async_context(self.pipeline.stream(codec))
            self._spawn(self._receive(subscription, codec == VIDEO_CODEC), f"record-{codec}")
        self._bus = self.events.subscribe()
        self._spawn(self._listen(self._bus), "record-triggers")
        self._spawn(self._watch_deadline(), "record-deadline")
        logger.info(
            "recording clips on %s: %.0f s before, %.0f s after",
            ", ".join(self.config.triggers), self.config.preroll_seconds,
            self.config.post_seconds,
        )  # fmt: skip

    def apply_settings(self, config: Config) -> None:
        """A new camera or size: the clip being recorded ends with the old pictures,
        and the pre-roll starts again, so that no clip mixes two sizes."""
        if (config.camera, config.video) == self._pictures:
            return
        self._pictures = (config.camera, config.video)
        self.fps = config.camera.fps
        self._finish()
        self.preroll = Preroll(self.config.preroll_seconds)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self, subscription: Subscription, video: bool) -> None:
        try:
            while True:
                frame = await subscription.get()
                self.preroll.add(frame, video)
                clip = self.active
                if clip is None:
                    continue
                if video and frame.captured_at > clip.end_at:
                    self._finish()
                elif frame.captured_at <= clip.end_at:
                    clip.frames.append(frame)
        except SubscriptionClosed:
            return

    async def _listen(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            if isinstance(event, Ring | Motion) and event.type in self.config.triggers:
                self.trigger(event.type)
            elif isinstance(event, MotionContinues):
                self.extend()
            elif isinstance(event, RecordingSwitch):
                await self._switch(event)

    async def _switch(self, event: RecordingSwitch) -> None:
        self.switched_on = event.on
        logger.info("recording switched %s by %s", "on" if event.on else "off", event.by)
        path = self._switched_off_file
        if path is not None:
            try:
                if event.on:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
                else:
                    await asyncio.to_thread(write_private, path, b"")
            except OSError as error:
                logger.warning("recording switch not kept for the next start: %s", error)
        self.events.publish(RecordingState(event.on))

    async def _watch_deadline(self) -> None:
        # A camera that stops delivering must not keep a clip open for ever.
        while True:
            await asyncio.sleep(1.0)
            clip = self.active
            if clip is not None and time.monotonic() > clip.end_at + 2.0:
                self._finish()

    def extend(self) -> None:
        """More of what is being recorded (motion that goes on): keep recording, but
        start nothing and count no new trigger."""
        if self.active is not None:
            self._extend(self.active, time.monotonic())

    def _extend(self, clip: ActiveClip, now: float) -> None:
        clip.end_at = min(max(clip.end_at, now + self.config.post_seconds), clip.limit_at)

    def trigger(self, kind: str) -> str | None:
        """Start a clip, or extend the one being recorded; its id, or None when there
        is nothing to record yet (the encoder has not produced a keyframe)."""
        if not self.switched_on:
            logger.info("%s: no clip, recording is switched off", kind)
            return None
        now = time.monotonic()
        clip = self.active
        if clip is not None:
            self._extend(clip, now)
            clip.triggers.append(kind)
            return clip.id
        frames = self.preroll.frames()
        if not frames:
            logger.warning("%s: nothing to record yet (no keyframe received)", kind)
            return None
        wall = time.time()
        start = frames[0].captured_at
        clip = ActiveClip(
            id=new_clip_id(kind, wall),
            trigger=kind,
            event_at=wall,
            event_monotonic=now,
            end_at=now,
            limit_at=start + self.config.max_seconds,
            frames=frames,
            triggers=[kind],
        )
        self._extend(clip, now)
        self.active = clip
        group = self.preroll.latest_group(VIDEO_CODEC)
        self._spawn(self._take_thumbnail(clip, group), "record-thumbnail")
        logger.info("%s: recording clip %s", kind, clip.id)
        return clip.id

    async def _take_thumbnail(self, clip: ActiveClip, group: list[EncodedFrame]) -> None:
        try:
            clip.thumbnail = await asyncio.to_thread(snapshot.latest_jpeg, group, THUMBNAIL_WIDTH)
        except snapshot.SnapshotError as error:
            logger.warning("clip %s: no picture for it: %s", clip.id, error)

    def _finish(self) -> None:
        clip, self.active = self.active, None
        if clip is not None:
            self._spawn(self._write(clip), f"record-write-{clip.id}")

    async def _write(self, clip: ActiveClip) -> None:
        video = [f for f in clip.frames if f.codec == VIDEO_CODEC]
        audio = [f for f in clip.frames if f.codec == AUDIO_CODEC]
        try:
            first = next(f for f in video if f.keyframe)
            picture = await asyncio.to_thread(snapshot.decode_latest, [first])
        except (StopIteration, snapshot.SnapshotError) as error:
            logger.error("clip %s not written: no decodable keyframe (%s)", clip.id, error)
            return

        def write_video(path: Path) -> ClipRecord:
            summary = write_mp4(path, video, audio, picture.width, picture.height, self.fps)
            return ClipRecord(
                id=clip.id,
                trigger=clip.trigger,
                triggers=clip.triggers,
                event_at=clip.event_at,
                started_at=clip.event_at - (clip.event_monotonic - summary.first_captured_at),
                duration=round(summary.duration, 3),
                size=path.stat().st_size,
                width=picture.width,
                height=picture.height,
                has_audio=summary.audio_frames > 0,
            )

        try:
            record = await asyncio.to_thread(self.store.add, clip.id, write_video, clip.thumbnail)
        except (ClipError, OSError) as error:
            logger.error("clip %s not written: %s", clip.id, error)
            return
        logger.info("clip %s saved: %.1f s, %d bytes", record.id, record.duration, record.size)
        self.events.publish(ClipSaved(record.id, record.trigger, record.event_at))

    async def snapshot(self) -> bytes | None:
        """The newest picture as a JPEG, from the pre-roll; None if it holds none."""
        group = self.preroll.latest_group(VIDEO_CODEC)
        if not group:
            return None
        return await asyncio.to_thread(snapshot.latest_jpeg, group)

    async def stop(self) -> None:
        """Stop receiving; a clip being recorded is written with what it has."""
        if self._bus is not None:
            self.events.unsubscribe(self._bus)
        for task in list(self._tasks):
            if not task.get_name().startswith("record-write-"):
                task.cancel()
        self._finish()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._streams.aclose()
        self.preroll.clear()


def build(context: OutputContext) -> list[Output]:
    """The recorder, when `[recording]` is enabled; its clips go under the state directory."""
    config = context.config
    recording = config.recording
    if not recording.enabled:
        return []
    directory = state_directory(config.server.state_dir) / "clips"
    try:
        store = ClipStore(directory, recording.quota_mb * 2**20, recording.min_free_mb * 2**20)
    except OSError as error:
        raise ConfigError(f"recording: {directory}: {error.strerror or error}") from None
    switched_off = directory.parent / "recording-switched-off"
    return [
        Recorder(
            recording,
            context.pipeline,
            context.events,
            store,
            config.camera.fps,
            switched_off,
            (config.camera, config.video),
        )
    ]
