"""Plain RTP to a media server's input, e.g. a Janus streaming mountpoint.

The shared frames' RTP payloads are already built; this adds one RTP header per packet
and sends it, unencrypted, to a server on the same host or LAN. The server fans out to
its viewers, so the Pi's cost stays that of one viewer however many watch there.
"""

from __future__ import annotations

import asyncio
import logging
import random

from aiortc.rtp import RtpPacket

from peercam.config import RtpTarget
from peercam.encode.codecs import H264, OPUS
from peercam.fanout.hub import SubscriptionClosed
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline

logger = logging.getLogger(__name__)


class RtpStream:
    """One media stream's RTP numbering: its own SSRC, sequence and time origin."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(15)
        self._origin = random.getrandbits(32)

    def packets(self, payloads: tuple[bytes, ...], timestamp: int) -> list[bytes]:
        packets = []
        for index, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.payload_type,
                marker=int(index == len(payloads) - 1),
                sequence_number=self._sequence,
                timestamp=(self._origin + timestamp) & 0xFFFFFFFF,
                ssrc=self.ssrc,
                payload=payload,
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            packets.append(packet.serialize())
        return packets


class RtpForwarder:
    def __init__(self, target: RtpTarget, pipeline: MediaPipeline) -> None:
        self.target = target
        self._pipeline = pipeline
        self._tasks: list[asyncio.Task[None]] = []
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def name(self) -> str:
        return f"RTP forwarder to {self.target.host}:{self.target.video_port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Unconnected: video and audio go to different ports of the same server.
        self._transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("0.0.0.0", 0)
        )
        routes = [(H264.name, self.target.video_port, self.target.video_payload_type)]
        if self.target.audio_port is not None and OPUS.name in self._pipeline.codecs:
            routes.append((OPUS.name, self.target.audio_port, self.target.audio_payload_type))
        for codec, port, payload_type in routes:
            task = asyncio.create_task(
                self._forward(codec, port, RtpStream(payload_type)), name=f"rtp-{codec}"
            )
            self._tasks.append(task)
        logger.info(
            "forwarding RTP to %s (video port %d)", self.target.host, self.target.video_port
        )

    async def _forward(self, codec: str, port: int, packets: RtpStream) -> None:
        transport = self._transport
        assert transport is not None
        address = (self.target.host, port)
        async with self._pipeline.stream(codec) as subscription:
            try:
                while True:
                    frame = await subscription.get()
                    for packet in packets.packets(frame.payloads, frame.rtp_timestamp):
                        transport.sendto(packet, address)
            except SubscriptionClosed:
                return

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def build(context: OutputContext) -> list[Output]:
    """One forwarder per `[[republish.rtp]]` target."""
    return [RtpForwarder(t, context.pipeline) for t in context.config.republish.rtp]
