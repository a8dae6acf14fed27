"""One RTSP client's session: its tracks, where their packets go (interleaved on the
client's TCP connection, or UDP to its ports), and the tasks that send them while it
plays. The packets are the shared RTP payloads with this session's own headers: no
encode per client.

A slow TCP client holds nobody back: its subscription to the shared stream skips to
the next keyframe when it falls behind (fanout/hub.py), while the connection's write
buffer is bounded. A client that stops asking (no request, no RTCP) for the session
timeout is reaped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from peercam.encode.rtp_stream import RtpStream
from peercam.fanout.hub import SubscriptionClosed
from peercam.pipeline import MediaPipeline
from peercam.rtsp.backchannel import Backchannel
from peercam.rtsp.describe import Track
from peercam.rtsp.request import RtspError
from peercam.rtsp.transport_spec import TransportSpec

logger = logging.getLogger(__name__)

SENDER_REPORT_PERIOD = 5.0
UDP_PORTS = (30000, 39998)  # even RTP ports; RTCP on the next, odd one


class PacketSink(Protocol):
    """Where one track's packets go."""

    def rtp(self, data: bytes) -> None: ...

    def rtcp(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait while the way out is full (TCP); UDP never waits."""
        ...

    def close(self) -> None:
        """Release what the sink holds of its own (UDP sockets)."""
        ...


class InterleavedSink:
    """RFC 2326 §10.12: '$', the channel, a 16-bit length, the packet."""

    def __init__(self, writer: asyncio.StreamWriter, spec: TransportSpec) -> None:
        self._writer = writer
        self._channels = (spec.first, spec.second)

    def _frame(self, channel: int, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(b"$" + bytes([channel]) + len(data).to_bytes(2, "big") + data)

    def rtp(self, data: bytes) -> None:
        self._frame(self._channels[0], data)

    def rtcp(self, data: bytes) -> None:
        self._frame(self._channels[1], data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        """The connection is its owner's to close."""


class _Receiver(asyncio.DatagramProtocol):
    def __init__(
        self, client: str, heard: Callable[[], None], on_data: Callable[[bytes], None]
    ) -> None:
        self._client = client
        self._heard = heard
        self._on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if addr[0] != self._client:
            return  # the ports are guessable: only the client's own packets count
        self._heard()  # RTCP receiver reports (and NAT punches): the client is there
        self._on_data(data)


class UdpSink:
    def __init__(
        self,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        client: tuple[str, int, int],
    ) -> None:
        self._rtp, self._rtcp = rtp, rtcp
        host, rtp_port, rtcp_port = client
        self._to_rtp, self._to_rtcp = (host, rtp_port), (host, rtcp_port)
        self.ports = (rtp.get_extra_info("sockname")[1], rtcp.get_extra_info("sockname")[1])

    @classmethod
    async def open(
        cls,
        local_host: str,
        client: tuple[str, int, int],
        heard: Callable[[], None],
        on_rtp: Callable[[bytes], None] = lambda data: None,
    ) -> UdpSink:
        """Bind an even port and the odd one after it, as clients expect RTCP there.
        `on_rtp` gets what the client sends to the even one (a back-channel's RTP)."""
        loop = asyncio.get_running_loop()
        for _ in range(32):
            port = random.randrange(UDP_PORTS[0], UDP_PORTS[1], 2)
            try:
                rtp, _ = await loop.create_datagram_endpoint(
                    lambda: _Receiver(client[0], heard, on_rtp), local_addr=(local_host, port)
                )
            except OSError:
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    lambda: _Receiver(client[0], heard, lambda data: None),
                    local_addr=(local_host, port + 1),
                )
            except OSError:
                rtp.close()
                continue
            return cls(rtp, rtcp, client)
        raise RtspError(453, "no free UDP port pair for this client")

    def rtp(self, data: bytes) -> None:
        self._rtp.sendto(data, self._to_rtp)

    def rtcp(self, data: bytes) -> None:
        self._rtcp.sendto(data, self._to_rtcp)

    async def drain(self) -> None:
        """UDP never waits: a packet the network cannot take is lost, as RTP expects."""

    def close(self) -> None:
        self._rtp.close()
        self._rtcp.close()


@dataclass
class TrackOut:
    track: Track
    spec: TransportSpec
    sink: PacketSink
    stream: RtpStream
    packets: int = 0
    octets: int = 0


@dataclass
class BackchannelIn:
    """The ONVIF back-channel set up in a session: where its RTP arrives."""

    control: str
    spec: TransportSpec
    sink: PacketSink  # its UDP ports (closed with it); nothing of its own over TCP
    receiver: Backchannel


@dataclass
class RtspSession:
    pipeline: MediaPipeline
    client: str  # address, for limits and the log
    user: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    tracks: dict[str, TrackOut] = field(default_factory=dict)  # by control ("trackID=0")
    backchannel: BackchannelIn | None = None
    last_heard: float = field(default_factory=time.monotonic)
    _playing: list[asyncio.Task[None]] = field(default_factory=list)
    _talking: bool = False  # a back-channel set up and PLAYed (it has no task to send)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    @property
    def playing(self) -> bool:
        return bool(self._playing) or self._talking

    def play(self) -> None:
        self._talking = self.backchannel is not None
        if self._playing:
            return
        for out in self.tracks.values():
            name = f"rtsp-{self.id[:6]}-{out.track.codec.name}"
            self._playing.append(asyncio.create_task(self._send(out), name=name))

    async def pause(self) -> None:
        self._talking = False
        tasks, self._playing = self._playing, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.pause()
        for out in self.tracks.values():
            out.sink.close()
        if self.backchannel is not None:
            self.backchannel.sink.close()
            await self.backchannel.receiver.close()

    def heard_on_channel(self, channel: int, data: bytes) -> None:
        """An interleaved frame: back-channel RTP on its channel; else RTCP."""
        self.heard()
        inbound = self.backchannel
        if inbound is not None and inbound.spec.tcp and channel == inbound.spec.first:
            inbound.receiver.receive(data)

    async def _send(self, out: TrackOut) -> None:
        codec = out.track.codec
        next_report = 0.0
        try:
            async with self.pipeline.stream(codec.name, out.track.layer) as subscription:
                while True:
                    frame = await subscription.get()
                    for packet in out.stream.packets(frame.payloads, frame.rtp_timestamp):
                        out.sink.rtp(packet)
                        out.packets += 1
                        out.octets += len(packet) - 12
                    if time.monotonic() >= next_report:
                        out.sink.rtcp(
                            out.stream.sender_report(codec.clock_rate, out.packets, out.octets)
                        )
                        next_report = time.monotonic() + SENDER_REPORT_PERIOD
                    await out.sink.drain()
        except SubscriptionClosed:
            return  # the pipeline is stopping
        except ConnectionError:
            return  # the client went away mid-send: its connection's end closes it
