"""One call's audio over plain RTP (RFC 3550, 3551): the microphone's packets from its
shared encoder to the phone (never an encoder of the call's own), the phone's audio
to the speaker through talkback (heard only while the call holds the floor, as a
viewer's voice is), and its RFC 4733 key presses told to the owner.

The phone's address is the one its SDP names until its own packets arrive from
another: then they are sent back where its packets come from (symmetric RTP, RFC
4961), which reaches a phone behind a NAT that wrote its private address."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from aiortc.rtp import RtpPacket

from peercam.audio.rtp_audio_in import RtpAudioIn
from peercam.audio.talkback import Talkback
from peercam.encode.rtp_stream import RtpStream
from peercam.fanout.hub import SubscriptionClosed
from peercam.pipeline import MediaPipeline
from peercam.sip.audio_plan import AudioPlan
from peercam.sip.dtmf import DtmfReceiver, KeyPress

logger = logging.getLogger(__name__)

SENDER_REPORT_PERIOD = 5.0  # seconds (RFC 3550 §6.2's minimum)
RESTART_AFTER = 1.0  # seconds of quiet after which the phone's numbering starts afresh
PORT_ATTEMPTS = 50


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("SIP call media: %s", exc)  # a phone gone: its SIP side says so


Datagrams = Callable[[bytes, tuple[str, int]], None]


async def open_rtp_pair(
    host: str, on_rtp: Datagrams, on_rtcp: Datagrams
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramTransport, int]:
    """An RTP socket on an even port and its RTCP socket on the next (RFC 3550 §11):
    (RTP, RTCP, the RTP port)."""
    loop = asyncio.get_running_loop()
    for _ in range(PORT_ATTEMPTS):
        port = random.randrange(16384, 32768, 2)
        try:
            rtp, _ = await loop.create_datagram_endpoint(
                lambda: _Socket(on_rtp), local_addr=(host, port)
            )
        except OSError:
            continue
        try:
            rtcp, _ = await loop.create_datagram_endpoint(
                lambda: _Socket(on_rtcp), local_addr=(host, port + 1)
            )
        except OSError:
            rtp.close()
            continue
        except BaseException:
            rtp.close()  # cancelled meanwhile: the port is not left open
            raise
        return rtp, rtcp, port
    raise OSError(f"no free pair of RTP ports on {host}")


class RtpSession:
    """What a call's media stream holds: its socket pair and the task sending on it,
    all let go by `close`."""

    def __init__(self) -> None:
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._sending: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
            self._sending = None
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None


class CallMedia(RtpSession):
    def __init__(
        self, pipeline: MediaPipeline, talkback: Talkback, floor_id: str, label: str,
        on_key: Callable[[KeyPress], None],
    ) -> None:  # fmt: skip
        super().__init__()
        self._pipeline = pipeline
        self._talkback = talkback
        self._floor_id = floor_id
        self._label = label
        self._on_key = on_key
        self._plan: AudioPlan | None = None
        self._remote: tuple[str, int] | None = None
        self._audio: RtpAudioIn | None = None
        self._keys = DtmfReceiver()
        self._last_heard = 0.0
        self._latched = False
        self._held = False  # the phone put the call on hold: nothing is sent
        self.sent = 0  # packets
        self.heard = 0  # audio packets played (or offered to talkback)
        self.keys = 0
        self.dropped = 0

    async def open(self, host: str) -> int:
        """Listen for the phone's RTP (an even port) and RTCP (the next one), on the
        address the phone will be told: the RTP port."""
        self._rtp, self._rtcp, port = await open_rtp_pair(
            host, self._received, lambda data, addr: None
        )
        return port

    def start(self, plan: AudioPlan) -> None:
        """Media flows: the plan is what offer and answer agreed."""
        self._plan = plan
        self._remote = plan.remote
        self._audio = RtpAudioIn(plan.receive, restart_after=RESTART_AFTER)
        if plan.sends:
            self._sending = asyncio.create_task(self._send(plan), name="sip-call-audio")

    async def _send(self, plan: AudioPlan) -> None:
        stream = RtpStream(plan.send_payload_type, talkspurts=True)
        octets = 0
        next_report = time.monotonic() + SENDER_REPORT_PERIOD
        try:
            async with self._pipeline.stream(plan.codec.name) as subscription:
                while True:
                    frame = await subscription.get()
                    for packet in stream.packets(frame.payloads, frame.rtp_timestamp):
                        if self._send_to_phone(packet):
                            self.sent += 1
                            octets += len(packet) - 12
                    if time.monotonic() >= next_report:
                        self._report(stream.sender_report(plan.codec.clock_rate, self.sent, octets))
                        next_report = time.monotonic() + SENDER_REPORT_PERIOD
        except SubscriptionClosed:
            return  # the pipeline is stopping

    def retarget(self, remote: tuple[str, int], sends: bool) -> None:
        """The phone's new offer in the call moved its audio (a PBX handing the media
        to the phone itself) or held it: send there, or not at all."""
        self._remote = remote
        self._latched = False  # the new address's own packets may correct it once more
        self._held = not sends

    def _send_to_phone(self, packet: bytes) -> bool:
        if self._rtp is None or self._remote is None or self._held:
            return False
        self._rtp.sendto(packet, self._remote)
        return True

    def _report(self, report: bytes) -> None:
        if self._rtcp is not None and self._remote is not None:
            self._rtcp.sendto(report, (self._remote[0], self._remote[1] + 1))

    def _received(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            self._receive(data, source)
        except Exception:
            # A fault of ours on one packet must not end the call's audio.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.exception("SIP call %s: a packet failed", self._label)

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        audio, plan = self._audio, self._plan
        if audio is None or plan is None:
            return  # not answered yet: early media is not played
        packet = audio.parse(data)
        if packet is None:
            self.dropped += 1
            return
        if packet.payload_type in plan.events:
            self._latch(source)
            self._key(packet)
            return
        if not audio.takes(packet):
            self.dropped += 1
            return
        now = time.monotonic()
        quiet_for, self._last_heard = now - self._last_heard, now
        if not audio.newer(packet, quiet_for):
            self.dropped += 1
            return
        self._latch(source)
        for frame in audio.decode(packet):
            self._talkback.hear(self._floor_id, frame)
        self.heard += 1

    def _latch(self, source: tuple[str, int]) -> None:
        # Once, at its first packet: a stray sender later on cannot take the call's audio.
        if self._latched:
            return
        self._latched = True
        if source != self._remote:
            logger.info("SIP call %s: the phone's audio comes from %s:%d", self._label, *source)
            self._remote = (source[0], source[1])

    def _key(self, packet: RtpPacket) -> None:
        press = self._keys.receive(packet.ssrc, packet.timestamp, packet.payload)
        if press is not None:
            self.keys += 1
            self._on_key(press)
