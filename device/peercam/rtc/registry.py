"""All live viewer sessions, by id: creation under limits, lookup, and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from peercam.auth.principal import Role
from peercam.config import Config
from peercam.encode.codecs import H264
from peercam.media import LOW, MAIN, Layer
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline
from peercam.rate_window import RateWindow
from peercam.rtc.layer_chooser import LayerRate
from peercam.rtc.negotiation import OfferPlan
from peercam.rtc.session import AudioListener, ChannelListener, VideoLayers, ViewerSession

logger = logging.getLogger(__name__)


class TooManyViewers(Exception):
    """The daemon is full (503)."""


class ClientOverLimit(Exception):
    """This client has too many sessions, or opens them too fast (429)."""


class SessionRegistry:
    def __init__(
        self,
        config: Config,
        pipeline: MediaPipeline,
        metrics: Metrics,
        on_audio: AudioListener | None = None,
        on_gone: Callable[[str], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """`on_channel`, set later (it needs what is built after the sessions), serves
        the data channel a viewer opens."""
        self.on_channel: ChannelListener | None = None
        self._config = config
        self._on_audio = on_audio
        self._on_gone = on_gone
        self._gone_tasks: set[asyncio.Task[None]] = set()
        self._pipeline = pipeline
        self._metrics = metrics
        self._sessions: dict[str, ViewerSession] = {}
        self._recent = RateWindow(60.0)  # session starts per client

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> ViewerSession | None:
        return self._sessions.get(session_id)

    def sessions(self) -> Iterator[ViewerSession]:
        """The sessions registered now (a copy: they may open and close meanwhile)."""
        return iter(list(self._sessions.values()))

    async def create(
        self, plan: OfferPlan, client: str, owner: str = "", role: Role = "viewer"
    ) -> tuple[ViewerSession, str]:
        """Open a session for `plan` and return it with its SDP answer."""
        limits = self._config.viewers
        if len(self._sessions) >= limits.max_viewers:
            raise TooManyViewers(f"viewer limit reached ({limits.max_viewers})")
        mine = sum(1 for s in self._sessions.values() if s.client == client)
        if mine >= limits.max_per_client:
            raise ClientOverLimit(f"at most {limits.max_per_client} viewers per client")
        theirs = sum(1 for s in self._sessions.values() if owner and s.owner == owner)
        if theirs >= limits.max_per_user:
            raise ClientOverLimit(f"at most {limits.max_per_user} viewers per user")
        if self._recent.count(client) >= limits.sessions_per_minute_per_client:
            raise ClientOverLimit(
                f"at most {limits.sessions_per_minute_per_client} new sessions a minute per client"
            )
        self._recent.add(client)
        session = ViewerSession(
            plan,
            self._pipeline,
            self._config.webrtc,
            self._config.viewers.connect_timeout,
            on_closed=self._forget,
            client=client,
            on_audio=self._on_audio,
            owner=owner,
            role=role,
            on_channel=self.on_channel,
            layers=self._video_layers(plan.video_codec),
        )
        self._sessions[session.id] = session
        self._metrics.viewers.set(len(self._sessions))
        try:
            answer = await session.answer()
        except BaseException:
            await session.close()
            raise
        self._metrics.sessions.labels(plan.video_codec).inc()
        self._count_layers()
        logger.info(
            "session %s from %s (%s): %s%s; metrics label %s",
            session.id,
            client or "?",
            owner or "?",
            plan.video_codec,
            f" + {plan.audio_codec}" if plan.audio_codec else "",
            session.metrics_label,
        )
        return session, answer

    def _video_layers(self, codec: str) -> VideoLayers | None:
        """The layers a viewer of `codec` may move between: H.264's main and low
        layers where the low one is configured."""
        low = self._config.low_layer
        if codec != H264.name or low is None:
            return None
        main = self._config.video.bitrate_kbps * 1000
        return VideoLayers((LayerRate(MAIN, main), LayerRate(LOW, low.bitrate)), self._switched)

    def _switched(self, layer: Layer) -> None:
        self._metrics.layer_switches.labels(layer).inc()
        self._count_layers()

    def _count_layers(self) -> None:
        if self._config.low_layer is None:
            return
        statuses = [s.layer_status() for s in self._sessions.values()]
        for layer in (MAIN, LOW):
            count = sum(1 for status in statuses if status is not None and status.layer == layer)
            self._metrics.layer_viewers.labels(layer).set(count)

    def _forget(self, session: ViewerSession) -> None:
        if self._sessions.pop(session.id, None) is not None:
            self._metrics.viewers.set(len(self._sessions))
            self._count_layers()
            logger.info("session %s closed", session.id)
            if self._on_gone is not None:
                task = asyncio.ensure_future(self._on_gone(session.id))
                self._gone_tasks.add(task)
                task.add_done_callback(self._gone_tasks.discard)

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())))
        await asyncio.gather(*self._gone_tasks)
