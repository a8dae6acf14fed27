"""WHIP (RFC 9725): the daemon publishes its one encoded stream to a media server.

peercam makes the offer (H.264 and Opus, sendonly), POSTs it, and keeps the session
until the server or the network ends it; then it publishes again after a backoff. On
shutdown the session resource is DELETEd. The stream is the shared one: the server
costs the Pi what one more viewer costs, and PLI/FIR from the server reach the shared
encoder like any viewer's.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from peercam.config import WebRtcConfig, WhipTarget
from peercam.encode.codecs import H264, OPUS
from peercam.fanout.hub import Subscription
from peercam.ice.servers import session_ice
from peercam.media import Kind
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.rtc import dtls
from peercam.rtc.negotiation import codec_preferences
from peercam.rtc.session import rtc_configuration
from peercam.rtc.shared_track import SharedFrameTrack, attach_to_sender

logger = logging.getLogger(__name__)


class WhipRefused(Exception):
    """The endpoint answered, but not with 201 Created and an SDP answer."""


class WhipPublisher:
    def __init__(
        self,
        target: WhipTarget,
        pipeline: MediaPipeline,
        webrtc: WebRtcConfig,
        backoff: tuple[float, float] = (2.0, 60.0),
    ) -> None:
        self.target = target
        self._pipeline = pipeline
        self._webrtc = webrtc
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.location: str | None = None
        self.etag: str | None = None
        self.published = asyncio.Event()

    @property
    def name(self) -> str:
        return f"WHIP publisher to {self.target.url}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"whip {self.target.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        return headers

    async def _run(self) -> None:
        delay = self._backoff[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            while True:
                try:
                    await self._publish_once(http)
                    delay = self._backoff[0]  # it worked for a while: start afresh
                    logger.warning("WHIP session with %s ended; publishing again", self.target.url)
                except (WhipRefused, aiohttp.ClientError, OSError, TimeoutError) as error:
                    logger.warning("WHIP publish to %s failed: %s; retrying in %.0f s",
                                   self.target.url, error, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _publish_once(self, http: aiohttp.ClientSession) -> None:
        ice = session_ice(self._webrtc, "whip")
        dtls.name_session(f"whip {self.target.url}")
        async with AsyncExitStack() as streams:
            pc = dtls.peer_connection(rtc_configuration(ice.for_daemon, relay_only=False))
            ended = asyncio.Event()

            def changed() -> None:
                if pc.connectionState in ("failed", "closed"):
                    ended.set()

            pc.on("connectionstatechange", changed)
            try:
                tracks: list[tuple[Kind, str]] = [("video", H264.name), ("audio", OPUS.name)]
                for kind, codec in tracks:
                    if codec in self._pipeline.codecs:
                        stream = await streams.enter_async_context(self._pipeline.stream(codec))
                        self._add_track(pc, kind, codec, stream)
                await self._negotiate(http, pc)
                logger.info(
                    "publishing over WHIP to %s (session %s)", self.target.url, self.location
                )
                self.published.set()
                await ended.wait()
            finally:
                self.published.clear()
                await self._hang_up(http)
                await pc.close()

    async def _negotiate(self, http: aiohttp.ClientSession, pc: RTCPeerConnection) -> None:
        # The offer goes out at once and the candidates follow by PATCH (trickle):
        # gathering, with STUN or TURN, can take seconds that need not delay it.
        offer = await pc.createOffer()
        gathering = asyncio.ensure_future(pc.setLocalDescription(offer))
        try:
            async with http.post(
                self.target.url, data=offer.sdp, headers=self._headers("application/sdp")
            ) as response:
                body = await response.text()
                if response.status != 201 or "Location" not in response.headers:
                    reason = " ".join(body.split())[:200]
                    raise WhipRefused(f"HTTP {response.status} {reason}".strip())
                self.location = urljoin(str(response.url), response.headers["Location"])
                self.etag = response.headers.get("ETag")
        finally:
            await gathering
        await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        await self._trickle(http, str(pc.localDescription.sdp))

    def _add_track(
        self, pc: RTCPeerConnection, kind: Kind, codec: str, stream: Subscription
    ) -> None:
        producer = self._pipeline.producer(codec)
        transceiver = pc.addTransceiver(SharedFrameTrack(kind, stream), direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(kind, codec))
        attach_to_sender(transceiver.sender, lambda: producer.request_keyframe("whip"))

    async def _trickle(self, http: aiohttp.ClientSession, local_sdp: str) -> None:
        """Send the gathered candidates, and their end, as an RFC 8840 sdpfrag."""
        assert self.location is not None
        headers = self._headers("application/trickle-ice-sdpfrag")
        # RFC 9725 4.3.1: a trickle PATCH names the session version it applies to.
        headers["If-Match"] = self.etag or "*"
        async with http.patch(self.location, data=sdpfrag(local_sdp), headers=headers) as response:
            if response.status not in (200, 204):
                # Not fatal: the server may not take trickle; its own candidates and our
                # connectivity checks can still find a path.
                logger.info("WHIP trickle to %s answered HTTP %d", self.location, response.status)

    async def _hang_up(self, http: aiohttp.ClientSession) -> None:
        location, self.location = self.location, None
        if location is None:
            return
        try:
            async with http.delete(location, headers=self._headers()) as response:
                logger.info("WHIP session %s deleted (HTTP %d)", location, response.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            logger.info("WHIP session %s not deleted: %s", location, error)


def sdpfrag(sdp: str) -> str:
    """The ICE parts of a local description as a trickle-ice-sdpfrag (RFC 8840): the
    credentials first, at session level, then each media section's candidates."""
    credentials: list[str] = []
    sections: list[list[str]] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            sections.append([line])
        elif line.startswith(("a=ice-ufrag:", "a=ice-pwd:")):
            if line not in credentials:
                credentials.append(line)
        elif sections and line.startswith(("a=mid:", "a=candidate:", "a=end-of-candidates")):
            sections[-1].append(line)
    lines = credentials + [line for section in sections for line in section]
    return "\r\n".join(lines) + "\r\n"


def build(context: OutputContext) -> list[Output]:
    """One publisher per `[[republish.whip]]` target."""
    config = context.config
    return [WhipPublisher(t, context.pipeline, config.webrtc) for t in config.republish.whip]
