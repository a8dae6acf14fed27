"""A WHEP viewer that is not the page: aiortc in the test process, like an NVR would be."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpReceiver,
    RTCSessionDescription,
)

from tests.access import Access
from tests.channel_client import ChannelClient


def video_capabilities() -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpReceiver.getCapabilities("video")
    assert capabilities is not None
    return list(capabilities.codecs)


@dataclass
class WhepAnswer:
    status: int
    location: str
    content_type: str
    links: list[str]
    sdp: str


@dataclass
class WhepViewer:
    access: Access  # the daemon, and whose credentials to use
    video_codec: str | None = None  # "video/H264" or "video/VP8" to force one
    audio_codec: str | None = None  # e.g. "audio/PCMU": a client that offers only that
    # Changes the offer as sent (the peer connection keeps its own): a client's quirk.
    edit_offer: Callable[[str], str] | None = None
    # Open the page's data channel ("peercam") in the offer, as the page does.
    channel_label: str | None = None
    # Listening from the start: the daemon speaks first once the channel opens.
    channel: ChannelClient | None = None
    pc: RTCPeerConnection = field(init=False)
    answer: WhepAnswer | None = None
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)
    posted_at: float = 0.0
    _track_seen: dict[str, asyncio.Event] = field(init=False)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.tracks[track.kind] = track
        self._track_seen[track.kind].set()

    async def __aenter__(self) -> WhepViewer:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._track_seen = {"audio": asyncio.Event(), "video": asyncio.Event()}
        video = self.pc.addTransceiver("video", direction="recvonly")
        if self.video_codec:
            video.setCodecPreferences(
                [c for c in video_capabilities() if c.mimeType in (self.video_codec, "video/rtx")]
            )
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        if self.audio_codec:
            capabilities = RTCRtpReceiver.getCapabilities("audio")
            assert capabilities is not None
            audio.setCodecPreferences(
                [c for c in capabilities.codecs if c.mimeType == self.audio_codec]
            )
        self.pc.on("track", self._on_track)
        if self.channel_label is not None:
            self.channel = ChannelClient(self.pc.createDataChannel(self.channel_label))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.posted_at = time.monotonic()
        offer = str(self.pc.localDescription.sdp)
        if self.edit_offer is not None:
            offer = self.edit_offer(offer)
        async with (
            self.access.session() as http,
            http.post(
                self.access.base + "/whep",
                data=offer,
                headers={"Content-Type": "application/sdp"},
            ) as response,
        ):
            text = await response.text()
            assert response.status == 201, f"{response.status}: {text}"
            self.answer = WhepAnswer(
                response.status,
                response.headers["Location"],
                response.headers["Content-Type"],
                response.headers.getall("Link", []),
                text,
            )
        await self.pc.setRemoteDescription(RTCSessionDescription(text, "answer"))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pc.close()

    async def video_frames(self, count: int, within: float = 15) -> list[av.VideoFrame]:
        return [
            f for f in await self._frames("video", count, within) if isinstance(f, av.VideoFrame)
        ]

    async def audio_frames(self, count: int, within: float = 15) -> list[av.AudioFrame]:
        return [
            f for f in await self._frames("audio", count, within) if isinstance(f, av.AudioFrame)
        ]

    async def _frames(self, kind: str, count: int, within: float) -> list[object]:
        async with asyncio.timeout(within):
            await self._track_seen[kind].wait()
            return [await self.tracks[kind].recv() for _ in range(count)]

    async def hang_up(self) -> int:
        assert self.answer is not None
        async with (
            self.access.session() as http,
            http.delete(self.access.base + self.answer.location) as response,
        ):
            return response.status
