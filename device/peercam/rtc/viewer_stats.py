"""The camera's side of one viewer's connection: round-trip time and loss as the viewer
reports them (RTCP receiver reports), what was sent, the sending rate, and the
candidate pair the media flows over. Read for /metrics and for the page's stats
overlay (sent to the page over its data channel).

Everything comes from aiortc's `getStats()` except the candidate pair: aiortc's report
has no candidate-pair entries, so the pair is read (never changed) from aioice, the ICE
agent under aiortc's `RTCIceTransport`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCRtpSender,
    RTCStatsReport,
)

from peercam.rtc.layer_chooser import LayerStatus

# Readings closer together than this give a noisy rate (or 0 when two readers ask at
# once): the rate is only recomputed over at least this many seconds.
MIN_RATE_INTERVAL = 0.5


@dataclass(frozen=True)
class Candidate:
    type: str  # host | srflx | prflx | relay
    protocol: str  # udp | tcp
    address: str
    port: int


@dataclass(frozen=True)
class SelectedPair:
    """The nominated pair: the camera's candidate and the viewer's."""

    local: Candidate
    remote: Candidate


@dataclass(frozen=True)
class ViewerStats:
    """One reading. Figures not known yet (no receiver report so far, one reading of
    the byte counters, ICE not connected) are None, never a made-up 0."""

    rtt: float | None = None  # seconds: video's, else audio's
    packets_lost: int | None = None  # cumulative, all kinds, as the viewer reports it
    fraction_lost: float | None = None  # 0..1 over the last report interval: video's, else audio's
    bytes_sent: Mapping[str, int] = field(default_factory=dict)  # per kind: RTP payload bytes
    packets_sent: Mapping[str, int] = field(default_factory=dict)  # per kind
    send_bitrate: float | None = None  # bits/s, payload of all kinds
    pair: SelectedPair | None = None
    layer: LayerStatus | None = None  # where the viewer may move between video layers

    def to_json(self, *, local_address: bool = False) -> dict[str, Any]:
        """What the page is sent (camelCase, units in the names).

        The camera's own address in the pair is left out (null) unless `local_address`
        is set, or it is a relay address: aioice's pairs always name the local base (a
        LAN address when not relayed), which a remote viewer's answer does not carry
        (ice/candidate_filter.py) and its stats must not tell it either."""
        pair: dict[str, Any] | None = None
        if self.pair is not None:
            local = self.pair.local
            shown = local_address or local.type == "relay"
            pair = {
                "local": {
                    "type": local.type,
                    "protocol": local.protocol,
                    "address": local.address if shown else None,
                    "port": local.port if shown else None,
                },
                "remote": {
                    "type": self.pair.remote.type,
                    "protocol": self.pair.remote.protocol,
                    "address": self.pair.remote.address,
                    "port": self.pair.remote.port,
                },
            }
        return {
            "rttSeconds": self.rtt,
            "packetsLost": self.packets_lost,
            "fractionLost": self.fraction_lost,
            "bytesSent": dict(self.bytes_sent),
            "packetsSent": dict(self.packets_sent),
            "sendBitrateBps": None if self.send_bitrate is None else round(self.send_bitrate),
            "candidatePair": pair,
            "layer": None if self.layer is None else self.layer.to_json(),
        }


class SendRate:
    """Bits per second of a growing byte counter, between readings at least
    MIN_RATE_INTERVAL apart; a reading sooner than that keeps the last rate."""

    def __init__(self) -> None:
        self._base: tuple[float, int] | None = None
        self._rate: float | None = None

    def update(self, total_bytes: int, now: float) -> float | None:
        if self._base is None:
            self._base = (now, total_bytes)
            return None
        then, before = self._base
        elapsed = now - then
        if elapsed < 0 or total_bytes < before:
            # A clock or counter that went back: start over rather than report a
            # negative rate.
            self._base = (now, total_bytes)
            self._rate = None
            return None
        if elapsed >= MIN_RATE_INTERVAL:
            self._rate = (total_bytes - before) * 8 / elapsed
            self._base = (now, total_bytes)
        return self._rate


class StatsSource(Protocol):
    """What is read of a peer connection (aiortc's RTCPeerConnection)."""

    async def getStats(self) -> RTCStatsReport: ...

    def getSenders(self) -> list[RTCRtpSender]: ...


class StatsReader:
    """Reads one viewer's peer connection; keeps what the rate needs between readings.
    One per reader of a session (each computes the rate over its own interval)."""

    def __init__(
        self,
        pc: StatsSource,
        clock: Callable[[], float] = time.monotonic,
        layer: Callable[[], LayerStatus | None] = lambda: None,
    ) -> None:
        self._pc = pc
        self._layer = layer
        self._clock = clock
        self._rate = SendRate()

    async def read(self) -> ViewerStats:
        report = await self._pc.getStats()
        now = self._clock()
        outbound = [s for s in report.values() if isinstance(s, RTCOutboundRtpStreamStats)]
        remote = [s for s in report.values() if isinstance(s, RTCRemoteInboundRtpStreamStats)]
        bytes_sent: dict[str, int] = {}
        packets_sent: dict[str, int] = {}
        for stream in outbound:
            bytes_sent[stream.kind] = bytes_sent.get(stream.kind, 0) + stream.bytesSent
            packets_sent[stream.kind] = packets_sent.get(stream.kind, 0) + stream.packetsSent
        layer = self._layer()
        own_rtt = None if layer is None else layer.rtt
        return ViewerStats(
            rtt=own_rtt if own_rtt is not None else _first(_rtt(s) for s in _video_first(remote)),
            packets_lost=sum(max(0, s.packetsLost) for s in remote) if remote else None,
            fraction_lost=_first(_fraction(s) for s in _video_first(remote)),
            bytes_sent=bytes_sent,
            packets_sent=packets_sent,
            send_bitrate=self._rate.update(sum(bytes_sent.values()), now) if outbound else None,
            pair=selected_pair(self._pc.getSenders()),
            layer=layer,
        )


def _video_first(
    streams: list[RTCRemoteInboundRtpStreamStats],
) -> list[RTCRemoteInboundRtpStreamStats]:
    return sorted(streams, key=lambda s: s.kind != "video")


def _first(values: Iterable[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def _rtt(stream: RTCRemoteInboundRtpStreamStats) -> float | None:
    # None until a receiver report echoes the sender's last SR (aiortc/rtcrtpsender.py,
    # _handle_rtcp_packet, lines 248-253: "if self.__lsr == report.lsr and
    # report.dlsr"); computed from time.time(), so a wall clock stepped back could
    # make it negative: unknown, not reported.
    rtt: float | None = stream.roundTripTime
    if rtt is None or not math.isfinite(rtt) or rtt < 0:
        return None
    return rtt


def _fraction(stream: RTCRemoteInboundRtpStreamStats) -> float | None:
    # aiortc passes the report's 8-bit fixed-point field on as is (lost * 256 /
    # expected: aiortc/rtcrtpreceiver.py, StreamStatistics.fraction_lost, line 185;
    # rtcrtpsender.py line 271), so 0..255.
    raw = stream.fractionLost
    if raw is None or not math.isfinite(raw):
        return None
    return min(1.0, max(0.0, raw / 256))


def selected_pair(senders: list[RTCRtpSender]) -> SelectedPair | None:
    """The nominated candidate pair of the senders' transport (the first's: the
    session's tracks share one with BUNDLE), or None before ICE completes and after
    it closes.

    aiortc keeps aioice's Connection as `RTCIceTransport._connection`
    (aiortc/rtcicetransport.py, line 273: `self._connection = gatherer._connection`),
    and aioice keeps the pair media flows over in `Connection._nominated`, by
    component (aioice/ice.py: declared at line 449, set in check_complete at line 873,
    used by sendto at line 766, cleared by close at line 690). Neither has a public
    accessor (aioice 0.13); both are only read here. An aioice pair's local
    candidate is always the base of the socket it was checked from (host, or relay
    for TURN: aioice/ice.py CandidatePair.local_candidate, line 249), so the local
    type is never srflx or prflx."""
    if not senders:
        return None
    ice = senders[0].transport.transport  # RTCDtlsTransport -> RTCIceTransport
    nominated = ice._connection._nominated.get(1)  # component 1: RTP (rtcp-mux)
    if nominated is None:
        return None
    local = nominated.local_candidate
    remote = nominated.remote_candidate
    # remote_addr: where packets go (an mDNS name resolved), aioice/ice.py line 253.
    remote_host, remote_port = nominated.remote_addr
    return SelectedPair(
        local=Candidate(local.type, local.transport.lower(), local.host, local.port),
        remote=Candidate(remote.type, remote.transport.lower(), remote_host, remote_port),
    )
