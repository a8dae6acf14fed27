"""The ONVIF audio back-channel (ONVIF Streaming Specification §5.3): an RTSP client
that DESCRIBEs with `Require: www.onvif.org/ver20/backchannel` is offered one more
audio medium, `a=sendonly` from its side, in G.711 (PCMU or PCMA, its choice by
payload type); the RTP it sends there comes out of the speaker.

Under the page's floor rules (audio/floor.py, doorbell/call.py), and like the page's
Talk button only for the admin role: the first packet asks for the floor, and the
floor is let go after IDLE_RELEASE without packets, at TEARDOWN, or when the session
ends; whoever answers a ring takes it over (an NVR left talking must not keep the
household from the door). While someone else holds it (a viewer talking, a call
answered), what the client sends is dropped and the log says who has it. Clients
(GStreamer's rtspsrc, go2rtc) stamp their own SSRC, sequence and timestamps and send
no RTCP for it: packets are taken by payload type, and within one SSRC ones not newer
than the last (a UDP reorder or duplicate) are dropped."""

from __future__ import annotations

import asyncio
import logging
import time

from aiortc.rtp import RtpPacket

from peercam.audio.rtp_audio_in import G711, RtpAudioIn
from peercam.doorbell.call import Doorbell

logger = logging.getLogger(__name__)

REQUIRE_TAG = "www.onvif.org/ver20/backchannel"
IDLE_RELEASE = 1.5  # seconds without a packet before the floor is let go


class Backchannel:
    def __init__(self, doorbell: Doorbell, floor_id: str, label: str) -> None:
        self._doorbell = doorbell
        self._floor_id = floor_id
        self._label = label
        self._audio = RtpAudioIn(G711, restart_after=IDLE_RELEASE)
        self._last_packet = 0.0
        self._holding = False
        self._asking: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._refused_until = 0.0
        self.packets = 0  # played
        self.dropped = 0

    def receive(self, data: bytes) -> None:
        """One RTP packet from the client (an interleaved frame or a datagram)."""
        try:
            self._receive(data)
        except Exception:
            # A fault of ours must not end the client's connection: its video goes on.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.exception("RTSP back-channel from %s: a packet failed", self._label)

    def _receive(self, data: bytes) -> None:
        now = time.monotonic()
        packet = self._parse(data, quiet_for=now - self._last_packet)
        if packet is None:
            self.dropped += 1
            return
        self._last_packet = now
        if not self._holding or self._doorbell.talkback.floor.holder != self._floor_id:
            self._holding = False  # taken over by whoever answered the door
            self.dropped += 1
            self._ask_for_floor()
            return
        for frame in self._audio.decode(packet):
            self._doorbell.talkback.hear(self._floor_id, frame)
        self.packets += 1

    def _parse(self, data: bytes, quiet_for: float) -> RtpPacket | None:
        packet = self._audio.parse(data)  # rtspsrc's UDP hole punches are not RTP
        if packet is None or not self._audio.takes(packet):
            return None
        return packet if self._audio.newer(packet, quiet_for) else None

    def _ask_for_floor(self) -> None:
        if self._asking is not None or time.monotonic() < self._refused_until:
            return
        self._asking = asyncio.create_task(self._take_floor(), name="rtsp-backchannel-floor")

    async def _take_floor(self) -> None:
        try:
            outcome = await self._doorbell.talk(self._floor_id, self._label, True, yields=True)
            if not outcome.ok:
                logger.info("RTSP back-channel from %s: not heard: %s", self._label, outcome.reason)
                self._refused_until = time.monotonic() + IDLE_RELEASE
                return
            self._holding = True
            self._watching = asyncio.create_task(self._release_when_quiet(), name="rtsp-bc-idle")
        finally:
            self._asking = None

    async def _release_when_quiet(self) -> None:
        while True:
            quiet = time.monotonic() - self._last_packet
            if quiet >= IDLE_RELEASE:
                await self._let_go()
                return
            await asyncio.sleep(IDLE_RELEASE - quiet)

    async def _let_go(self) -> None:
        self._holding = False
        if self._doorbell.talkback.floor.holder == self._floor_id:
            await self._doorbell.talk(self._floor_id, self._label, False)

    async def close(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in (self._asking, self._watching) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._asking = self._watching = None
        await self._let_go()
