"""One viewer: its peer connection, its subscriptions to the shared streams, and the
tasks it owns. Closing a session releases all of them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCRtpSender,
    RTCSessionDescription,
)

from peercam.auth.principal import Role
from peercam.config import IceServer, WebRtcConfig
from peercam.fanout.hub import FrameFeed
from peercam.fanout.layer_feed import LayerFeed
from peercam.ice.host_candidates import advertise_public_address
from peercam.ice.servers import session_ice
from peercam.media import MAIN, Kind, Layer
from peercam.pipeline import MediaPipeline
from peercam.rtc import dtls, playout_delay, sync_groups
from peercam.rtc.frame_sender import FrameSender
from peercam.rtc.layer_chooser import LayerChooser, LayerRate, LayerStatus
from peercam.rtc.negotiation import OfferPlan, codec_preferences
from peercam.rtc.rtcp_watch import PathEvent, watch_rtcp
from peercam.rtc.shared_track import (
    SharedFrameTrack,
    attach_to_sender,
    release_audio_promptly,
)

logger = logging.getLogger(__name__)

AudioListener = Callable[[str, MediaStreamTrack], Coroutine[Any, Any, None]]
# The `client` of a session opened through the rendezvous (remote/signaling.py), then
# the device's id: such a viewer is outside the home.
REMOTE_CLIENT = "remote:"
# Serves a data channel the viewer opened, for as long as the session lives.
ChannelListener = Callable[["ViewerSession", RTCDataChannel], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class VideoLayers:
    """The video layers a viewer may be moved between (best first), and who is told
    of a move (with the layer moved to)."""

    rates: tuple[LayerRate, ...]
    on_switched: Callable[[Layer], None] = lambda layer: None


def rtc_configuration(servers: list[IceServer], relay_only: bool) -> RTCConfiguration:
    # Always an explicit list: given None, aiortc quietly adds a public STUN server.
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in servers
        ],
        iceTransportPolicy=policy,
    )


class ViewerSession:
    def __init__(
        self,
        plan: OfferPlan,
        pipeline: MediaPipeline,
        webrtc: WebRtcConfig,
        connect_timeout: float,
        on_closed: Callable[[ViewerSession], None],
        client: str = "",
        on_audio: AudioListener | None = None,
        owner: str = "",
        role: Role = "viewer",
        on_channel: ChannelListener | None = None,
        layers: VideoLayers | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(16)
        # Names it in /metrics, which viewers may read: nothing of the id, which
        # commands the doorbell through this session.
        self.metrics_label = secrets.token_hex(4)
        self.plan = plan
        self.client = client
        # Who opened it (a user or token name): only they may act through it.
        self.owner = owner
        # The owner's role when the session opened: what its commands may do.
        self.role: Role = role
        self._on_audio = on_audio
        self._on_channel = on_channel
        # TURN credentials are minted for this session and carry its id.
        self.ice = session_ice(webrtc, self.id)
        self._public_ip = webrtc.public_ip
        self._playout_delay_ms = webrtc.playout_delay_ms
        self._frame_sender = webrtc.frame_sender
        self._layers = layers
        self._chooser: LayerChooser | None = None
        self._feed: LayerFeed | None = None
        self._video_sender: FrameSender | None = None  # the probe's, for the status
        relay_only = webrtc.ice_transport_policy == "relay"
        self.pc = dtls.peer_connection(rtc_configuration(self.ice.for_daemon, relay_only))
        self._pipeline = pipeline
        self._connect_timeout = connect_timeout
        self._on_closed = on_closed
        # The session's streams: closing it releases encoders nobody else watches.
        self._streams = AsyncExitStack()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Future[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)

    @property
    def remote(self) -> bool:
        return self.client.startswith(REMOTE_CLIENT)

    async def answer(self) -> str:
        """Set up the tracks for the planned codecs and return the SDP answer."""
        dtls.name_session(self.id)  # aiortc's connect task, started below, inherits it
        await self._add_track("video", self.plan.video_codec)
        if self.plan.audio_codec is not None:
            await self._add_track("audio", self.plan.audio_codec)
        await self.pc.setRemoteDescription(RTCSessionDescription(self.plan.sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        if self.plan.mdns_candidates:
            self.add_candidates(self.plan.mdns_candidates)
        self._spawn(self._reap_if_never_connected(), "connect-timeout")
        return advertise_public_address(str(self.pc.localDescription.sdp), self._public_ip)

    async def _add_track(self, kind: Kind, codec: str) -> None:
        if kind == "video":
            subscription = await self._video_feed(codec)
        else:
            subscription = await self._streams.enter_async_context(self._pipeline.stream(codec))
        pipeline, feed = self._pipeline, self._feed if kind == "video" else None

        def request_keyframe() -> None:
            # From the encoder of the layer the viewer gets now: a viewer moved to the
            # low layer must not have the main one make keyframes it never sees.
            pipeline.producer(codec, feed.layer if feed is not None else MAIN).request_keyframe(
                "rtcp"
            )

        # Audio is two-way when the viewer offers it and something listens (talkback).
        two_way = kind == "audio" and self.plan.audio_sendrecv and self._on_audio is not None
        transceiver = self.pc.addTransceiver(
            SharedFrameTrack(kind, subscription), direction="sendrecv" if two_way else "sendonly"
        )
        # Must precede setRemoteDescription: set later, aiortc ignores it silently.
        transceiver.setCodecPreferences(codec_preferences(kind, codec))
        attach_to_sender(transceiver.sender, request_keyframe)
        sync_groups.own_stream(transceiver.sender, kind)
        delay = self._playout_delay_ms
        if kind == "video" and delay != "browser":
            playout_delay.offer_in_answers()
            playout_delay.ask_for_playout_delay(transceiver.sender, 0, delay)
        frame_sender = FrameSender(transceiver.sender) if self._frame_sender else None
        if kind == "video":
            self._video_sender = frame_sender
            self._follow_path(transceiver.sender, frame_sender)
        if two_way:
            release_audio_promptly(transceiver.receiver)

    async def _video_feed(self, codec: str) -> FrameFeed:
        """The viewer's video: from the layer its path carries where there are layers
        (the chooser moves it), else the main stream."""
        layers = self._layers
        if layers is None or not all(
            self._pipeline.has_layer(codec, r.layer) for r in layers.rates
        ):
            return await self._streams.enter_async_context(self._pipeline.stream(codec))
        self._chooser = LayerChooser(layers.rates, time.monotonic())
        feed = await self._streams.enter_async_context(
            self._pipeline.layered_stream(codec, self._chooser.layer, layers.on_switched)
        )
        self._feed = feed
        return feed

    def _follow_path(self, sender: RTCRtpSender, frame_sender: FrameSender | None) -> None:
        """Move the viewer between layers as its RTCP tells, probing its path (through
        its frame sender) while it may move up."""
        chooser, feed = self._chooser, self._feed
        if chooser is None or feed is None:
            return

        def on_event(event: PathEvent) -> None:
            choice = chooser.observe(event)
            if choice is not None:
                logger.info("session %s: to layer %s (%s)", self.id, choice.layer, choice.reason)
                feed.switch_to(choice.layer)
            if frame_sender is not None:
                frame_sender.probe(chooser.padding(event.at, frame_sender.can_probe))
                frame_sender.repair_bitrate = chooser.repair_budget()
                frame_sender.round_trip = chooser.rtt or 0.0
            feed.limit_to(chooser.budget())

        watch_rtcp(sender, on_event, None if frame_sender is None else frame_sender.report_sent_at)

    def layer_status(self) -> LayerStatus | None:
        chooser, feed = self._chooser, self._feed
        if chooser is None or feed is None:
            return None
        probe = self._video_sender.padding_bitrate if self._video_sender is not None else 0
        return LayerStatus(
            feed.layer,
            feed.target,
            chooser.reason,
            chooser.estimate,
            probe,
            feed.limit,
            chooser.rtt,
        )

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._on_audio is not None:
            # Drained for the session's whole life: aiortc queues what nobody reads.
            self._spawn(self._on_audio(self.id, track), "talkback")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._on_channel is not None and self._closing is None:
            self._spawn(self._on_channel(self, channel), f"channel-{channel.label[:12]}")
        else:
            channel.close()

    def add_candidates(self, candidates: list[RTCIceCandidate]) -> None:
        """Add the viewer's candidates in the background: an mDNS name may take a
        second to resolve, and no answer or PATCH response may wait on it."""
        if candidates:
            self._spawn(self._add_candidates(candidates), "candidates")

    async def _add_candidates(self, candidates: list[RTCIceCandidate]) -> None:
        for candidate in candidates:
            if self.pc.connectionState == "closed":
                return
            try:
                await self.pc.addIceCandidate(candidate)
            except Exception as error:  # a candidate we cannot use must not end the session
                logger.info("session %s: ignoring candidate %s: %s", self.id, candidate, error)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=f"session-{self.id[:6]}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap_if_never_connected(self) -> None:
        await asyncio.sleep(self._connect_timeout)
        if self.pc.connectionState != "connected":
            logger.info(
                "session %s: not connected after %.0f s; closing", self.id, self._connect_timeout
            )
            self.close_soon()

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("session %s: %s", self.id, state)
        if state in ("failed", "closed"):
            self.close_soon()

    def close_soon(self) -> asyncio.Future[None]:
        """Start closing (once) and return the closing task; safe from callbacks."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
            self._closing.set_name(f"session-{self.id[:6]}-close")
        return self._closing

    async def close(self) -> None:
        await asyncio.shield(self.close_soon())

    async def _close(self) -> None:
        # The session stays registered until the peer is closed, so shutdown can await
        # it; the streams are released after: with no camera linger that waits for the
        # camera to stop (a second or two on a Pi), which must hold up neither the
        # viewer's place under the limits nor the end of its call.
        for task in self._tasks:
            task.cancel()
        try:
            await self.pc.close()
        except Exception:  # a peer connection broken mid-negotiation must still go
            logger.exception("session %s: error closing its peer connection", self.id)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._on_closed(self)
        try:
            await self._streams.aclose()
        except Exception:  # releasing an encoder failed: the session is gone all the same
            logger.exception("session %s: error releasing its streams", self.id)
