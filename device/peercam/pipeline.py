"""Source → shared encoder → fan-out hub, started on demand.

An encoder runs while at least one viewer needs its codec, and a source runs while at
least one encoder needs it: a camera nobody watches costs nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peercam.capture.source import PacedSource
from peercam.encode.backend import EncoderBackend
from peercam.encode.codecs import BY_NAME
from peercam.encode.shared_encoder import SharedEncoder
from peercam.fanout.hub import StreamHub, Subscription
from peercam.media import Captured, EncodedFrame, Kind
from peercam.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass
class _Route:
    encoder: SharedEncoder
    hub: StreamHub
    source: PacedSource[Any]


class MediaPipeline:
    def __init__(
        self,
        sources: dict[Kind, PacedSource[Any]],
        backends: dict[str, Callable[[], EncoderBackend]],
        metrics: Metrics,
        keyframe_min_gap: float,
        queue_frames: int,
    ) -> None:
        self.metrics = metrics
        self.queue_frames = queue_frames
        self._sources = sources
        self._routes: dict[str, _Route] = {}
        self._idle: set[str] = set()
        for codec, make_backend in backends.items():
            spec = BY_NAME[codec]
            if spec.kind not in sources:
                continue
            encoder = SharedEncoder(
                spec, make_backend, self._publisher(codec), metrics, keyframe_min_gap
            )
            hub = StreamHub(
                codec,
                spec.has_keyframes,
                request_keyframe=encoder.request_keyframe,
                on_drop=metrics.dropped_frames.labels(codec).inc,
                on_empty=functools.partial(self._idle.add, codec),
            )
            self._routes[codec] = _Route(encoder, hub, sources[spec.kind])

    def _publisher(self, codec: str) -> Callable[[EncodedFrame], None]:
        def publish(frame: EncodedFrame) -> None:
            self._routes[codec].hub.publish(frame)

        return publish

    def encoder(self, codec: str) -> SharedEncoder:
        return self._routes[codec].encoder

    def subscribe(self, codec: str) -> Subscription:
        """A new viewer of `codec`; starts its encoder (and source) if they are idle."""
        route = self._routes[codec]
        self._idle.discard(codec)
        if not route.encoder.running:
            route.encoder.start()
        if not route.source.running:
            route.source.start(self._deliver(route.source))
            logger.info("%s source started", route.source.name)
        return route.hub.subscribe(self.queue_frames)

    def _deliver(self, source: PacedSource[Any]) -> Callable[[Captured], None]:
        def deliver(captured: Captured) -> None:
            for route in self._routes.values():
                if route.source is source:
                    route.encoder.feed(captured)

        return deliver

    async def release_idle(self) -> None:
        """Stop encoders nobody watches, and sources no encoder needs.

        Viewers close their subscriptions synchronously; stopping an encoder must be
        awaited, so it happens here, called by whoever closed the last viewer.
        """
        idle, self._idle = self._idle, set()
        for codec in idle:
            route = self._routes[codec]
            if len(route.hub) == 0 and route.encoder.running:
                await route.encoder.stop()
        for source in set(self._sources.values()):
            needed = any(r.encoder.running for r in self._routes.values() if r.source is source)
            if source.running and not needed:
                await source.stop()
                logger.info("%s source stopped", source.name)

    async def stop(self) -> None:
        for route in self._routes.values():
            await route.encoder.stop()
        for source in set(self._sources.values()):
            await source.stop()
