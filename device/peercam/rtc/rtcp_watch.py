"""What a viewer's RTCP says about its path, as typed events.

aiortc's sender takes the viewer's RTCP in `_handle_rtcp_packet`: it answers NACKs
and keyframe requests and reads receiver reports for its statistics, but a REMB (the
browser's estimate of what its path carries, RFC draft-alvestrand-rmcat-remb) it only
logs. The watch wraps that method: aiortc's handling is kept whole, and each packet
about this sender is told to a listener first. tests/test_layer_choice.py checks the
method is still there and still called for every packet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PathEstimate:
    """The viewer's estimate of the bitrate its path carries (REMB)."""

    bitrate: int  # bits per second
    at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class LossReport:
    """A receiver report on this sender's stream."""

    fraction_lost: float  # 0..1, since the viewer's previous report
    jitter: int  # in the stream's clock units
    rtt: float | None  # seconds; None before the viewer has had a sender report
    at: float


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """The viewer asked for packets again (NACK) or for a keyframe (PLI, FIR)."""

    kind: str  # "nack" | "keyframe"
    packets: int  # how many a NACK names; 1 for a keyframe request
    at: float


PathEvent = PathEstimate | LossReport | RepairRequest
PathListener = Callable[[PathEvent], None]


# aiortc's record of the last sender report sent: its LSR field and when (time.time()).
_LSR, _LSR_TIME = "_RTCRtpSender__lsr", "_RTCRtpSender__lsr_time"
MAX_ROUND_TRIP = 10.0


ReportLookup = Callable[[int], float | None]  # an LSR: when its sender report was sent


def round_trip(
    sender: RTCRtpSender, lsr: int, dlsr: int, now: float, sent_at: ReportLookup | None = None
) -> float | None:
    """RFC 6.4.1's round trip: since the sender report the viewer last had, less the
    viewer's delay since (`dlsr`, 1/65536 s). The report's own NTP field is not when it
    was sent (aiortc puts the last RTP packet's time there, which is older by however
    long no frame went out), so the time comes from aiortc's record of the last one
    sent, as its own statistics do, or from `sent_at` (reports sent beside aiortc's);
    a report on an older one gives no figure. Wall clock (as aiortc records it): a
    figure made impossible by a clock step is None."""
    if lsr == 0:
        return None
    # Both may have sent one with this LSR (aiortc stamps its own with the last
    # frame's time, as the probe's report is): the viewer times from the later.
    records = [sent_at(lsr) if sent_at is not None else None]
    if getattr(sender, _LSR, None) == lsr:
        records.append(getattr(sender, _LSR_TIME, None))
    known = [r for r in records if r is not None]
    if not known:
        return None
    sent = max(known)
    rtt = now - sent - dlsr / 65536
    return rtt if 0 <= rtt <= MAX_ROUND_TRIP else None


def events_in(
    packet: AnyRtcpPacket,
    sender: RTCRtpSender,
    now: float,
    wall: float,
    sent_at: ReportLookup | None = None,
) -> list[PathEvent]:
    """What `packet` says about the stream `sender` sends."""
    ssrc = sender._ssrc
    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        return [
            LossReport(
                report.fraction_lost / 256,
                report.jitter,
                round_trip(sender, report.lsr, report.dlsr, wall, sent_at),
                now,
            )
            for report in packet.reports
            if report.ssrc == ssrc
        ]
    if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        return [RepairRequest("nack", len(packet.lost), now)] if packet.media_ssrc == ssrc else []
    if isinstance(packet, RtcpPsfbPacket):
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) and packet.media_ssrc == ssrc:
            return [RepairRequest("keyframe", 1, now)]
        if packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:  # another application's feedback, or a broken one
                return []
            return [PathEstimate(bitrate, now)] if ssrc in ssrcs else []
    return []


def watch_rtcp(
    sender: RTCRtpSender, listener: PathListener, sent_at: ReportLookup | None = None
) -> None:
    """Tell `listener` what each RTCP packet for `sender` says, before aiortc's own
    handling of it (which is kept). A listener that fails is the listener's fault:
    it must not cost the viewer its NACKs and keyframes."""
    missing = [
        a for a in ("_handle_rtcp_packet", "_ssrc", _LSR, _LSR_TIME) if not hasattr(sender, a)
    ]
    if missing:
        raise RuntimeError(f"this aiortc version lacks the sender internals {missing}")
    handle: Callable[[AnyRtcpPacket], Awaitable[None]] = sender._handle_rtcp_packet

    async def watched(packet: AnyRtcpPacket) -> None:
        try:
            for event in events_in(packet, sender, time.monotonic(), time.time(), sent_at):
                listener(event)
        except Exception:
            logger.exception("a viewer's RTCP listener failed")
        await handle(packet)

    setattr(sender, "_handle_rtcp_packet", watched)  # noqa: B010
