"""One call's video to a phone that took it: the camera's H.264 from its shared
encoder (never an encoder of the call's own), in the RTP payloads every viewer gets,
numbered for this phone; a phone's picture-loss report (RTCP PLI or FIR) asks the
encoder for a keyframe, through the same rate limit as a viewer's."""

from __future__ import annotations

import asyncio
import logging
import struct
import time

from aiortc.rtp import RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket

from peercam.encode.rtp_stream import RtpStream
from peercam.fanout.hub import SubscriptionClosed
from peercam.media import Layer
from peercam.pipeline import MediaPipeline
from peercam.sip.call_media import SENDER_REPORT_PERIOD, RtpSession, open_rtp_pair
from peercam.sip.video_plan import VideoPlan

logger = logging.getLogger(__name__)

CODEC = "h264"
RTCP_PSFB_FIR = 4  # RFC 5104 §4.3.1: full intra request


class CallVideo(RtpSession):
    def __init__(self, pipeline: MediaPipeline, layer: Layer, label: str) -> None:
        super().__init__()
        self._pipeline = pipeline
        self.layer = layer
        self._label = label
        self._remote: tuple[str, int] | None = None
        self._held = False
        self.sent = 0  # packets
        self.keyframes_asked = 0

    async def open(self, host: str) -> int:
        # RTCP on the RTP port too: a phone that multiplexes them (RFC 5761).
        self._rtp, self._rtcp, port = await open_rtp_pair(
            host, self._rtcp_received, self._rtcp_received
        )
        return port

    def retarget(self, remote: tuple[str, int], sends: bool) -> None:
        """A new offer in the call moved the phone's video, or held it."""
        self._remote = remote
        self._held = not sends

    def start(self, plan: VideoPlan) -> None:
        self._remote = plan.remote
        self._sending = asyncio.create_task(self._send(plan), name="sip-call-video")

    async def _send(self, plan: VideoPlan) -> None:
        stream = RtpStream(plan.payload_type)
        octets = 0
        next_report = time.monotonic() + SENDER_REPORT_PERIOD
        try:
            # A new subscription waits for a keyframe and asks for one.
            async with self._pipeline.stream(CODEC, self.layer) as subscription:
                while True:
                    frame = await subscription.get()
                    for packet in stream.packets(frame.payloads, frame.rtp_timestamp):
                        if self._rtp is not None and self._remote is not None and not self._held:
                            self._rtp.sendto(packet, self._remote)
                            self.sent += 1
                            octets += len(packet) - 12
                    if time.monotonic() >= next_report and self._rtcp is not None:
                        report = stream.sender_report(90_000, self.sent, octets)
                        remote = self._remote or plan.remote
                        self._rtcp.sendto(report, (remote[0], remote[1] + 1))
                        next_report = time.monotonic() + SENDER_REPORT_PERIOD
        except SubscriptionClosed:
            return  # the pipeline is stopping

    def _rtcp_received(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 8 or not 200 <= data[1] <= 206:
            return  # not RTCP (RFC 5761 §4: packet types 200-206)
        try:
            packets = RtcpPacket.parse(data)
        except (ValueError, struct.error):
            return  # malformed: dropped, as any stray datagram
        for packet in packets:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframes_asked += 1
                self._pipeline.producer(CODEC, self.layer).request_keyframe("phone")
