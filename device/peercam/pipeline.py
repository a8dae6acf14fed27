"""Source → one producer per codec → fan-out hub, started on demand.

A codec's producer is either a shared software encoder fed with raw frames or, when
the camera encodes that codec itself, a passthrough of the camera's own frames; each
says which it takes (encode/producer.py), and so does a picture tap. A
producer runs while at least one viewer needs its codec, and a source runs while at
least one producer needs it: a camera nobody watches costs nothing. A source nobody
needs stays open for `linger` seconds first, so that a page refresh (the viewer leaves
and is back within a second) finds it running instead of closing and reopening it: a
Pi camera takes a second or two to do that.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from peercam.audio.selection import choose_microphone
from peercam.capture.selection import build_camera, choose_camera
from peercam.capture.source import Source
from peercam.config import Config
from peercam.encode.audio import AacAudioEncoder, OpusAudioEncoder, TelephonyAudioEncoder
from peercam.encode.backend import EncoderBackend
from peercam.encode.codecs import AAC, BY_NAME, H264, OPUS
from peercam.encode.native_stream import NativeStream
from peercam.encode.probe import choose_h264_implementation
from peercam.encode.producer import Delivered, FrameSink, Producer, Takes, kind_of
from peercam.encode.shared_encoder import SharedEncoder
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.fanout.hub import StreamHub, Subscription
from peercam.fanout.layer_feed import LayerFeed
from peercam.media import (
    LOW,
    MAIN,
    SUB,
    CapturedPreview,
    CapturedVideo,
    EncodedFrame,
    Kind,
    Layer,
    own_copy,
)
from peercam.metrics import Metrics
from peercam.service.native_memory import return_free_memory

logger = logging.getLogger(__name__)

PictureTap = Callable[[CapturedVideo | CapturedPreview], None]


class _Tap:
    """A FrameSink that shows a caller the camera's pictures: the small stream where
    the camera has one, else its raw frames. It only reads them."""

    stamps_frames = False
    running = True

    def __init__(self, tap: PictureTap, takes: Takes) -> None:
        self.tap = tap
        self.takes = takes

    def feed(self, captured: Delivered) -> None:
        if isinstance(captured, CapturedVideo | CapturedPreview):
            self.tap(captured)


@dataclass
class _Route:
    producer: Producer
    hub: StreamHub
    source: Source[Any]


@dataclass(frozen=True)
class ExtraLayer:
    """A smaller encode of a video codec (layer "sub" for NVRs' detection, "low" for
    viewers on a narrow path):
    encoded once for all who take it, from the camera's own low-resolution stream
    where it has one (the ISP scaled it for free), else from its raw frames, scaled
    in the encoder's thread. `max_fps` thins the camera's rate."""

    codec: str
    layer: Layer
    make_backend: Callable[[], EncoderBackend]
    max_fps: float


def route_name(codec: str, layer: Layer) -> str:
    """How logs and metrics name a route: "h264" for the main layer, "h264/sub"."""
    return codec if layer == MAIN else f"{codec}/{layer}"


class MediaPipeline:
    def __init__(
        self,
        sources: dict[Kind, Source[Any]],
        backends: dict[str, Callable[[], EncoderBackend]],
        metrics: Metrics,
        keyframe_min_gap: float,
        queue_frames: int,
        linger: float = 0.0,
        extra_layers: tuple[ExtraLayer, ...] = (),
    ) -> None:
        self.metrics = metrics
        self.queue_frames = queue_frames
        self.linger = linger
        self._lingering = False
        self._linger_task: asyncio.Task[None] | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._release_wanted = False
        self._stopped = False
        self._sources = sources
        self._routes: dict[tuple[str, Layer], _Route] = {}
        self._idle: set[tuple[str, Layer]] = set()
        # Callers that want the camera's raw pictures themselves (motion detection).
        self._video_taps: list[_Tap] = []
        self._keyframe_min_gap = keyframe_min_gap
        for codec, make_backend in backends.items():
            source = sources.get(BY_NAME[codec].kind)
            if source is not None:
                self._add_route(codec, MAIN, self._main(codec, make_backend, source), source)
        for extra in extra_layers:
            source = sources.get("video")
            if source is not None and (extra.codec, MAIN) in self._routes:
                self._add_route(extra.codec, extra.layer, self._extra(extra, source), source)

    def _main(
        self, codec: str, make_backend: Callable[[], EncoderBackend], source: Source[Any]
    ) -> Producer:
        """The producer of `codec`'s main layer: the source's own encoded stream
        where it makes that codec, else a shared encoder."""
        spec, publish = BY_NAME[codec], self._publisher((codec, MAIN))
        if source.native_codec == codec:
            return NativeStream(spec, source, publish, self.metrics, self._keyframe_min_gap)
        return SharedEncoder(spec, make_backend, publish, self.metrics, self._keyframe_min_gap)

    def _extra(self, extra: ExtraLayer, source: Source[Any]) -> Producer:
        return SharedEncoder(
            BY_NAME[extra.codec],
            extra.make_backend,
            self._publisher((extra.codec, extra.layer)),
            self.metrics,
            self._keyframe_min_gap,
            name=route_name(extra.codec, extra.layer),
            takes=Takes.PREVIEW if source.has_preview else Takes.RAW,
            max_fps=extra.max_fps,
        )

    async def replace_camera(
        self,
        camera: Source[Any],
        backends: dict[str, Callable[[], EncoderBackend]],
        extra_layers: tuple[ExtraLayer, ...] = (),
    ) -> None:
        """Another camera (or the same with other settings) and its video encoders in
        place of the old ones, the streams' hubs kept: viewers, RTSP clients and the
        recorder stay subscribed and get the new pictures from a keyframe on, at the
        new size. `backends`: the video codecs', the same as before (and the same
        layers); anything else is a new pipeline (ValueError)."""
        old = self._sources.get("video")
        keys = {key for key, route in self._routes.items() if route.source is old}
        wanted = {(codec, MAIN) for codec in backends} | {(e.codec, e.layer) for e in extra_layers}
        if old is None or keys != wanted:
            raise ValueError("other video codecs or layers: not the same pipeline")
        running = {key for key in keys if self._routes[key].producer.running}
        for key in keys:
            await self._routes[key].producer.stop()
        if old.running:
            await old.stop()
            logger.info("%s source stopped", old.name)
        self._sources["video"] = camera
        layers = {(e.codec, e.layer): e for e in extra_layers}
        for key in keys:
            codec, layer = key
            route = self._routes[key]
            route.producer = (
                self._main(codec, backends[codec], camera)
                if layer == MAIN
                else self._extra(layers[key], camera)
            )
            route.source = camera
            route.hub.request_keyframe = route.producer.request_keyframe
        takes = Takes.PREVIEW if camera.has_preview else Takes.RAW
        self._video_taps = [_Tap(tap.tap, takes) for tap in self._video_taps]
        for key in running:
            self._routes[key].producer.start()
        self._update_outputs(camera)
        if running or self._video_taps:
            camera.start(self._deliver(camera))
            logger.info("%s source started", camera.name)

    def _add_route(self, codec: str, layer: Layer, producer: Producer, source: Source[Any]) -> None:
        key = (codec, layer)
        hub = StreamHub(
            route_name(codec, layer),
            BY_NAME[codec].has_keyframes,
            request_keyframe=producer.request_keyframe,
            on_drop=self.metrics.dropped_frames.labels(route_name(codec, layer)).inc,
            on_empty=functools.partial(self._mark_idle, key),
        )
        self._routes[key] = _Route(producer, hub, source)

    def _publisher(self, key: tuple[str, Layer]) -> Callable[[EncodedFrame], None]:
        def publish(frame: EncodedFrame) -> None:
            self._routes[key].hub.publish(frame)

        return publish

    @property
    def codecs(self) -> list[str]:
        """The codecs made (each has its main layer)."""
        return [codec for codec, layer in self._routes if layer == MAIN]

    def has_layer(self, codec: str, layer: Layer) -> bool:
        return (codec, layer) in self._routes

    def sources(self) -> list[Source[Any]]:
        return list(set(self._sources.values()))

    def source(self, kind: Kind) -> Source[Any] | None:
        return self._sources.get(kind)

    def producer(self, codec: str, layer: Layer = MAIN) -> Producer:
        return self._routes[(codec, layer)].producer

    def subscribe(self, codec: str, layer: Layer = MAIN) -> Subscription:
        """A new viewer of `codec`; starts its producer (and source) if they are idle."""
        route = self._routes[(codec, layer)]
        self._idle.discard((codec, layer))
        if not route.producer.running:
            route.producer.start()
            self._update_outputs(route.source)
        if not route.source.running:
            route.source.start(self._deliver(route.source))
            logger.info("%s source started", route.source.name)
        return route.hub.subscribe(self.queue_frames)

    @asynccontextmanager
    async def stream(self, codec: str, layer: Layer = MAIN) -> AsyncIterator[Subscription]:
        """`codec`'s shared frames for as long as the block runs; on leaving, the
        subscription is closed and encoders nobody needs any more are stopped. The one
        way an output takes a stream, so that no output forgets the release."""
        subscription = self.subscribe(codec, layer)
        try:
            yield subscription
        finally:
            subscription.close()
            await self.release_idle()

    @asynccontextmanager
    async def layered_stream(
        self, codec: str, layer: Layer, on_switched: Callable[[Layer], None] = lambda layer: None
    ) -> AsyncIterator[LayerFeed]:
        """`stream` for a viewer that may move between `codec`'s layers (starting on
        `layer`): the encoders of the layers it leaves are stopped once nobody needs
        them."""
        feed = LayerFeed(
            functools.partial(self.subscribe, codec), layer, self._release_soon, on_switched
        )
        try:
            yield feed
        finally:
            feed.close()
            await self.release_idle()

    def _release_soon(self) -> None:
        """`release_idle` from a callback that cannot await it (again after the one
        under way, which may have looked before this release); `stop` awaits it."""
        self._release_wanted = True
        if self._stopped:
            return  # stop() released everything
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.create_task(self._release_while_wanted(), name="release")
            self._releasing.add_done_callback(_log_failure)

    async def _release_while_wanted(self) -> None:
        while self._release_wanted:
            self._release_wanted = False
            await self.release_idle()

    @asynccontextmanager
    async def pictures(self, tap: PictureTap) -> AsyncIterator[bool]:
        """`tap` sees the camera's pictures for as long as the block runs (the block
        gets False when there is no camera); on leaving, a camera nothing else needs
        is released. The picture counterpart of `stream`."""
        added = self.add_video_tap(tap)
        try:
            yield added
        finally:
            self.remove_video_tap(tap)
            await self.release_idle()

    def add_video_tap(self, tap: PictureTap) -> bool:
        """Hand `tap` every picture the camera captures, on the event loop, until
        removed; the camera runs meanwhile. Its low-resolution stream where it has one,
        else its raw frames. False when there is no camera."""
        source = self._sources.get("video")
        if source is None:
            return False
        self._video_taps.append(_Tap(tap, Takes.PREVIEW if source.has_preview else Takes.RAW))
        self._update_outputs(source)
        if not source.running:
            source.start(self._deliver(source))
            logger.info("%s source started", source.name)
        return True

    def remove_video_tap(self, tap: PictureTap) -> None:
        """Stop handing pictures to `tap`; `release_idle` then stops a camera that
        nothing else needs."""
        kept = [t for t in self._video_taps if t.tap != tap]
        if len(kept) < len(self._video_taps):
            self._video_taps = kept
            source = self._sources.get("video")
            if source is not None:
                self._update_outputs(source)

    def _taps_of(self, source: Source[Any]) -> bool:
        return bool(self._video_taps) and source is self._sources.get("video")

    def _sinks(self, source: Source[Any]) -> list[FrameSink]:
        """What `source` feeds: taps first (they only read a picture), then producers."""
        taps: list[FrameSink] = list(self._video_taps) if self._taps_of(source) else []
        return taps + [r.producer for r in self._routes.values() if r.source is source]

    def _update_outputs(self, source: Source[Any]) -> None:
        wanted = {sink.takes for sink in self._sinks(source) if sink.running}
        source.set_outputs(
            raw=Takes.RAW in wanted,
            encoded=Takes.ENCODED in wanted,
            preview=Takes.PREVIEW in wanted,
        )

    def _deliver(self, source: Source[Any]) -> Callable[[Delivered], None]:
        def deliver(captured: Delivered) -> None:
            kind = kind_of(captured)
            stamped = False
            # Looked up per capture: taps come and go while the source runs.
            for sink in self._sinks(source):
                if sink.takes is not kind or not sink.running:
                    continue
                if stamped and sink.stamps_frames and isinstance(captured, CapturedVideo):
                    sink.feed(own_copy(captured))
                else:
                    sink.feed(captured)
                stamped = stamped or sink.stamps_frames

        return deliver

    def _mark_idle(self, key: tuple[str, Layer]) -> None:
        # Looked up on each call: release_idle swaps in a new set.
        self._idle.add(key)

    async def release_idle(self) -> None:
        """Stop producers nobody watches now, and sources no producer needs once they
        have lingered unneeded.

        Viewers close their subscriptions synchronously; stopping an encoder must be
        awaited, so it happens here, called by whoever closed the last viewer.
        """
        idle, self._idle = self._idle, set()
        for key in idle:
            route = self._routes[key]
            if len(route.hub) == 0 and route.producer.running:
                await route.producer.stop()
                self._update_outputs(route.source)
        if self.linger <= 0:
            await self._stop_unneeded_sources()
            return
        if any(not self._needed(source) for source in self._running_sources()):
            # Each departure restarts the wait: sources stop `linger` seconds after the
            # last one, if nobody came back meanwhile.
            if self._linger_task is not None and self._lingering:
                self._linger_task.cancel()
                self._linger_task = None
            if self._linger_task is None:
                self._linger_task = asyncio.create_task(self._linger(), name="source-linger")

    def _running_sources(self) -> list[Source[Any]]:
        return [source for source in set(self._sources.values()) if source.running]

    def _needed(self, source: Source[Any]) -> bool:
        return self._taps_of(source) or any(
            r.producer.running for r in self._routes.values() if r.source is source
        )

    async def _linger(self) -> None:
        self._lingering = True
        try:
            await asyncio.sleep(self.linger)
        finally:
            self._lingering = False
        try:
            await self._stop_unneeded_sources()
        finally:
            if self._linger_task is asyncio.current_task():
                self._linger_task = None

    async def _stop_unneeded_sources(self) -> None:
        stopped = False
        for source in self._running_sources():
            if not self._needed(source):
                await source.stop()
                stopped = True
                logger.info("%s source stopped", source.name)
        if stopped and not any(source.running for source in self._sources.values()):
            # Nobody watches: the encoders' buffers are free; hand the pages back. Only
            # then: a session that never got going also ends up here.
            return_free_memory()

    async def stop(self) -> None:
        self._stopped = True
        if self._releasing is not None:
            await asyncio.gather(self._releasing, return_exceptions=True)
        task, self._linger_task = self._linger_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for route in self._routes.values():
            await route.producer.stop()
        for source in self._running_sources():
            await source.stop()
            logger.info("%s source stopped", source.name)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("releasing idle encoders failed", exc_info=task.exception())


def build_pipeline(config: Config, metrics: Metrics) -> MediaPipeline:
    """The configured camera and microphone with an encoder for each configured codec.
    Finding the camera probes the hardware: raises ConfigError when the settings do
    not fit the camera found."""
    video = build_video(config)
    sources: dict[Kind, Source[Any]] = {"video": video.camera}
    backends = dict(video.backends)
    microphone = choose_microphone(config.audio)
    if microphone is not None:
        sources["audio"] = microphone
        for audio_codec in config.audio.codecs:
            if audio_codec == OPUS.name:
                bitrate = config.audio.bitrate_kbps * 1000
                backends[OPUS.name] = functools.partial(OpusAudioEncoder, bitrate)
            elif audio_codec == AAC.name:
                # AAC needs more than Opus for the same speech; 64 kbit/s at the least.
                bitrate = max(64, config.audio.bitrate_kbps) * 1000
                backends[AAC.name] = functools.partial(AacAudioEncoder, bitrate)
            else:
                backends[audio_codec] = functools.partial(TelephonyAudioEncoder, audio_codec)
    return MediaPipeline(
        sources,
        backends,
        metrics,
        keyframe_min_gap=config.video.keyframe_min_gap_ms / 1000,
        queue_frames=config.viewers.queue_frames,
        linger=config.camera.linger_seconds,
        extra_layers=video.extra_layers,
    )


@dataclass(frozen=True)
class VideoParts:
    camera: Source[Any]
    backends: dict[str, Callable[[], EncoderBackend]]  # per video codec
    extra_layers: tuple[ExtraLayer, ...]


def build_video(config: Config) -> VideoParts:
    """The configured camera and its encoders' makers (nothing opened yet). Finding
    the camera probes the hardware (blocking): raises ConfigError when the settings
    do not fit the camera found."""
    choice = choose_camera(config)
    logger.info(
        "camera: %s; %s at %d fps", choice.description, config.camera.size, config.camera.fps
    )
    camera = build_camera(config, choice)
    width, height = config.camera.dimensions
    settings = VideoSettings(
        width,
        height,
        config.camera.fps,
        config.video.bitrate_kbps * 1000,
        config.video.keyframe_interval,
    )
    backends: dict[str, Callable[[], EncoderBackend]] = {}
    for codec in config.video.codecs:
        implementation = ""
        if codec == H264.name and camera.native_codec != H264.name:
            implementation, why = choose_h264_implementation(
                config.video.h264_encoder, width, height
            )
            logger.info("software H.264: %s (%s)", implementation, why)
        backends[codec] = functools.partial(PyAVVideoEncoder, codec, settings, implementation)
    return VideoParts(camera, backends, _small_layers(config, camera))


# The low layer is for paths that barely carry it: its frames, keyframes included, are
# held to 0.2 s of its bitrate. Measured (bench/constrained_viewer.py, 1 Mbit/s link,
# 640x360 at 500 kbit/s): x264's own keyframes of ~20 KB took glass-to-glass p95 to
# ~200 ms as each drained through the link; held to 0.2 s, 5-9 KB, the pattern's PSNR
# unchanged (31.0 dB).
LOW_LAYER_BUFFER_SECONDS = 0.2


def _small_layers(config: Config, camera: Source[Any]) -> tuple[ExtraLayer, ...]:
    """The small H.264 encodes of the camera's small picture (`camera.lores_size`):
    the NVRs' stream ("sub", thinned) and the viewers' low layer ("low", full rate,
    low bitrate), each where configured. Their encoder is chosen as the main one's
    is (a Pi 4's V4L2 hardware block takes more streams beside picamera2's), and
    each runs only while someone takes it."""
    layers = []
    for layer, small in ((SUB, config.small_stream), (LOW, config.low_layer)):
        if small is None:
            continue
        settings = VideoSettings(
            small.width, small.height, small.fps, small.bitrate, config.video.keyframe_interval,
            LOW_LAYER_BUFFER_SECONDS if layer == LOW else None,
        )  # fmt: skip
        implementation, why = choose_h264_implementation(
            config.video.h264_encoder, small.width, small.height
        )
        logger.info(
            "H.264 layer %s: %dx%d at %d fps, %d kbit/s, from the camera's %s, %s (%s)",
            layer,
            small.width,
            small.height,
            small.fps,
            small.bitrate // 1000,
            "low-resolution stream" if camera.has_preview else "frames",
            implementation,
            why,
        )
        make = functools.partial(PyAVVideoEncoder, H264.name, settings, implementation)
        thinned = small.fps if small.fps < config.camera.fps else 0.0  # 0: every frame
        layers.append(ExtraLayer(H264.name, layer, make, thinned))
    return tuple(layers)
