"""Plain RTP to a media server's input, e.g. a Janus streaming mountpoint.

The shared frames' RTP payloads are already built; this adds one RTP header per packet
and sends it, unencrypted, to a server on the same host or LAN. The server fans out to
its viewers, so the Pi's cost stays that of one viewer however many watch there.
"""

from __future__ import annotations

import asyncio
import logging

from peercam.config import RtpTarget
from peercam.encode.codecs import H264, OPUS
from peercam.encode.rtp_stream import RtpStream
from peercam.fanout.hub import SubscriptionClosed
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline

logger = logging.getLogger(__name__)


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
