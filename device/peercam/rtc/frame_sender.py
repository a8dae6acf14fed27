"""A viewer's RTP, sent a frame at a time.

The shared encoder packetizes each frame once; what is left per viewer is to put a
header on each payload, protect it with the viewer's SRTP key and send it. aiortc's
sender does that packet by packet through objects, coroutines and one system call
each (about 30 us a packet on the test machine); this does it per frame: a header
template filled in place (rtp_header.py), the frame's packets protected in place in
one buffer (srtp_frame.py), and its datagrams handed to the socket together
(pair_socket.py).

It takes over two methods of aiortc's RTCRtpSender, as instance attributes: the
loop its `send()` starts (`_run_rtp`) and its NACK answer (`_retransmit`). The rest
of the sender is aiortc's and keeps working from the same state: sender reports read
the four counters written here once a frame, PLI/FIR go to the shared encoder
(shared_track.py), `stop()` waits on the started/exited events set here. A relayed
pair (TURN over UDP, TCP or TLS) has no socket of its own: there each packet goes
through aiortc's DTLS transport as before (a probe's too), header template and
history still ours.
tests/test_frame_sender.py fails loudly if an aiortc upgrade moves any of it.

For the viewer's layer chooser (layer_chooser.py) it also probes the path when asked
(`probe`: RTX copies of each frame's packets at a given rate, and sender reports every
0.2 s, recorded by their LSR so that the viewer's reports time the round trip through
the path's current queue), and holds its NACK answers to a rate and to once a round
trip per packet (`repair_bitrate`, `round_trip`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from aiortc import RTCRtpCodecParameters, RTCRtpSender, rtp
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.utils import random32, uint16_add, uint32_add

from peercam.media import EncodedFrame
from peercam.rtc.pair_socket import PairSocket
from peercam.rtc.rtp_header import HeaderTemplate, abs_send_time, ntp_now
from peercam.rtc.shared_track import SharedFrameTrack
from peercam.rtc.srtp_frame import FrameProtector

logger = logging.getLogger(__name__)

# What a NACK can still be answered from: more than a second of 720p (aiortc keeps 128
# packets, fewer than one 1080p keyframe has). At most, not about: a packet sent again
# under its own number must lie within SRTP's 1024-packet send window (aiortc's
# rtcdtlstransport.py sets window_size 1024), else libsrtp refuses it as a replay.
HISTORY_PACKETS = 1000
# NACKs for one packet answered at most once in this long (or a round trip, if longer);
# answers saved up for at most this many seconds of `repair_bitrate`.
MIN_REPAIR_GAP = 0.05
REPAIR_SECONDS = 0.5
# A probe's copies: at most this many seconds' worth owed, this many packets a frame.
MAX_PADDING_SECONDS = 0.1
PROBE_REPORT_INTERVAL = 0.2
PROBE_HOLD = 2.0  # seconds a probe asked for goes on unless asked again
MAX_PACKET = 1500  # bytes: no RTP packet of a viewer's is larger
KEPT_REPORTS = 16
MAX_PADDING_PACKETS = 64

_SENDER = "_RTCRtpSender__"
_DTLS = "_RTCDtlsTransport__"
# What of aiortc's sender and DTLS transport this relies on (tests/test_frame_sender.py).
SENDER_ATTRIBUTES = tuple(
    _SENDER + name
    for name in (
        "mid", "rtp_header_extensions_map", "rtx_payload_type", "track", "rtp_started",
        "rtp_exited", "ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count",
        "cname", "lsr", "lsr_time",
    )
)  # fmt: skip
SENDER_METHODS = ("_run_rtp", "_retransmit", "_ssrc", "_rtx_ssrc", "_enabled", "transport")
DTLS_ATTRIBUTES = ("_state", "_tx_srtp", _DTLS + "tx_bytes", _DTLS + "tx_packets")
# Written once a frame, in the objects' own dictionaries (aiortc's names, mangled).
_NTP, _RTP, _OCTETS, _PACKETS = (
    _SENDER + n for n in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count")
)
_TX_BYTES, _TX_PACKETS = _DTLS + "tx_bytes", _DTLS + "tx_packets"
_CONNECTED = State.CONNECTED


class _SentFrame(NamedTuple):  # one per viewer per frame: a tuple is the cheapest
    first: int  # sequence number of its first packet
    timestamp: int
    payloads: tuple[bytes, ...]
    # Its abs-send-time: a packet sent again under its own number must be the same
    # bytes (with AES-GCM, one nonce over two different headers gives away the
    # authentication key).
    sent_at: int


class FrameSender:
    """Installed on one sender before its `send()`; lives as long as the sender.

    Frames reach it two ways. While the selected pair has a socket of its own, the
    hub hands each frame over as it is published and it leaves at once, on the loop,
    with no task of this viewer woken. Otherwise (before the pair is chosen, over a
    relay, or when the loop must wait) the frame is queued in the viewer's
    subscription and the sender's task takes it: the path aiortc's own loop had,
    and the one that ends the sender when the connection does.
    """

    def __init__(self, sender: RTCRtpSender, clock: Callable[[], float] = time.monotonic) -> None:
        missing = [a for a in SENDER_ATTRIBUTES if not hasattr(sender, a)]
        missing += [a for a in SENDER_METHODS if not hasattr(sender, a)]
        if missing:
            raise RuntimeError(f"this aiortc version lacks the sender internals {missing}")
        self._sender = sender
        self._clock = clock
        self._history: deque[_SentFrame] = deque()
        self._history_packets = 0
        self._rtx_sequence = random_sequence_number()
        self._sequence = random_sequence_number()
        self._origin = random32()
        self._socket: PairSocket | None = None
        # While `run` awaits a relayed frame's sends, its numbers are not yet taken: a
        # frame handed over then would reuse them, and overtake it.
        self._relaying = False
        self._template: HeaderTemplate | None = None
        self._protector: FrameProtector | None = None
        self._rtx_template: HeaderTemplate | None = None
        # Bits per second of redundant RTX copies sent beside the frames: a probe of
        # the viewer's path (rtc/layer_chooser.py), 0 when none is wanted.
        self.padding_bitrate = 0
        self._padding_until = 0.0
        self._padding_credit = 0.0  # bytes due
        self._padding_at: float | None = None
        self._reported_at = 0.0  # when a sender report was last sent while probing
        self._reports_sent: dict[int, float] = {}  # LSR field: time.time() it was sent
        # Answers to NACKs: at most this many bits per second (None: all), and not
        # again within a round trip (seconds), both told by the viewer's path.
        self.repair_bitrate: int | None = None
        self.round_trip = 0.0
        self._repair_credit = 0.0
        self._repair_at = clock()
        self._repaired: dict[int, float] = {}  # sequence number: when last answered
        setattr(sender, "_run_rtp", self.run)  # noqa: B010
        setattr(sender, "_retransmit", self.retransmit)  # noqa: B010

    def _get(self, name: str) -> Any:
        return getattr(self._sender, _SENDER + name)

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        """aiortc's `_run_rtp`: from the sender's start to its stop."""
        sender = self._sender
        self._get("rtp_started").set()
        try:
            if codec.payloadType is None:  # negotiated codecs always have one
                raise RuntimeError("the sender's codec has no payload type")
            self._template = HeaderTemplate.build(
                self._get("rtp_header_extensions_map"),
                codec.payloadType,
                sender._ssrc,
                self._get("mid"),
            )
            direct_to: SharedFrameTrack | None = None
            while True:
                track = self._get("track")
                if track is None:
                    await asyncio.sleep(0.02)
                    continue
                if isinstance(track, SharedFrameTrack) and track is not direct_to:
                    # peercam never replaces a sender's track; were it to, the old
                    # subscription would go on delivering until closed.
                    track.subscription.start(self._deliver)
                    direct_to = track
                frame: EncodedFrame = await track.recv()
                if not sender._enabled or not frame.payloads:
                    continue
                dtls: RTCDtlsTransport = sender.transport
                socket = self._open_socket(dtls)
                ntp = ntp_now()
                numbered = self._number(frame, ntp)
                if socket.direct:
                    self._send_frame(dtls, socket, numbered, frame.payload_bytes)
                    self._sent(numbered, ntp, frame.payload_bytes)
                else:
                    # A relay: aiortc's own path, one packet at a time (it protects and
                    # counts).
                    self._relaying = True
                    try:
                        headers = self._headers(numbered)
                        for header, payload in zip(headers, frame.payloads, strict=True):
                            await dtls._send_rtp(bytes(header) + payload)
                        self._sent(numbered, ntp, frame.payload_bytes)
                        if self.padding_bitrate:
                            await self._probe_relayed(dtls, numbered, ntp)
                    finally:
                        self._relaying = False
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            logger.exception("a viewer's frame sender failed")  # stop() must not hang
        finally:
            track = self._get("track")
            if track is not None:
                track.stop()
                setattr(sender, _SENDER + "track", None)
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._get("rtp_exited").set()

    def _deliver(self, frame: EncodedFrame) -> bool:
        """The hub's direct hand-over: sent now, or False to queue it for `run`."""
        sender = self._sender
        if not sender._enabled or not frame.payloads:
            return True  # dropped, as `run` would
        if self._relaying:
            return False  # `run` sends it after the frame it is on
        dtls: RTCDtlsTransport = sender.transport
        try:
            socket = self._open_socket(dtls)
            if not socket.direct:
                return False  # a relay: aiortc's path, from `run`
            ntp = ntp_now()
            numbered = self._number(frame, ntp)
            self._send_frame(dtls, socket, numbered, frame.payload_bytes)
        except Exception:
            # Never into the hub's publish, which serves the other viewers too. Nothing
            # was counted as sent: queued, `run` meets the same error, logs it and ends
            # this viewer, as it would have without the hand-over.
            return False
        self._sent(numbered, ntp, frame.payload_bytes)
        if self.padding_bitrate:
            try:
                self._probe_along(dtls, socket, numbered, ntp)
            except Exception as error:  # the frame went: a probe less is no harm
                logger.debug("a probe's packets not sent: %r", error)
        return True

    @property
    def can_probe(self) -> bool:
        """Whether a probe would be sent: a pair is selected (its own socket or a relay
        over UDP) and RTX is negotiated. Not over a relay reached by TCP or TLS: there
        a probe that overfills the path is not dropped but queued in the daemon's
        unbounded write buffer ahead of the frames, and the sender reports that would
        show the queue wait behind it."""
        socket = self._socket
        return (
            socket is not None and not socket.streamed and self._get("rtx_payload_type") is not None
        )

    def probe(self, bitrate: int, for_seconds: float = PROBE_HOLD) -> None:
        """Send `bitrate` of RTX copies beside the frames for `for_seconds` (then none,
        unless asked again: the viewer's RTCP, which keeps asking, may stop)."""
        self.padding_bitrate = bitrate
        self._padding_until = self._clock() + for_seconds

    def _probe_along(
        self, dtls: RTCDtlsTransport, socket: PairSocket, frame: _SentFrame, ntp: int
    ) -> None:
        if self._probe_ended():
            return
        copies = self._padding(frame)
        if copies is not None:
            self._send(dtls, socket, *copies)
        report = self._probe_report(ntp)
        if report is not None:
            socket.send([dtls._tx_srtp.protect_rtcp(report)])

    async def _probe_relayed(self, dtls: RTCDtlsTransport, frame: _SentFrame, ntp: int) -> None:
        """The same probe over a relay (UDP: see `can_probe`), through aiortc's path as
        the frames go: a viewer behind TURN (a phone on a mobile network, often) that
        was moved down would otherwise never be moved up again, since its browser's
        estimate grows only to about 1.5 times what it receives."""
        if self._probe_ended():
            return
        try:
            copies = self._padding(frame)
            if copies is not None:
                for header, payload in zip(*copies, strict=True):
                    await dtls._send_rtp(bytes(header) + payload)
            report = self._probe_report(ntp)
            if report is not None:
                await dtls._send_rtp(report)  # aiortc's: protected as RTCP by its type
        except Exception as error:  # the frame went: a probe less is no harm
            logger.debug("a probe's packets not sent over the relay: %r", error)

    def _probe_ended(self) -> bool:
        if self._clock() > self._padding_until:
            self.padding_bitrate = 0
        return self.padding_bitrate == 0

    def _open_socket(self, dtls: RTCDtlsTransport) -> PairSocket:
        """The selected pair's socket, or ConnectionError (aiortc's own words) when there
        is nothing to send on: `run` ends on it, the hand-over leaves the frame to `run`."""
        if dtls._state is not _CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        socket = self._pair_socket(dtls)
        if socket is None:
            raise ConnectionError("Cannot send data, not connected")
        return socket

    def _pair_socket(self, dtls: RTCDtlsTransport) -> PairSocket | None:
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return None
        if self._socket is None or self._socket.pair is not pair:
            if self._socket is not None:
                self._socket.close()
            self._socket = PairSocket(pair)
        return self._socket

    def _number(self, frame: EncodedFrame, ntp: int) -> _SentFrame:
        """`frame` as it is to leave at `ntp`: numbered on from the last frame sent,
        stamped on this viewer's timeline."""
        timestamp = uint32_add(self._origin, frame.rtp_timestamp)
        return _SentFrame(self._sequence, timestamp, frame.payloads, abs_send_time(ntp))

    def _headers(self, numbered: _SentFrame) -> list[bytearray]:
        """Its packets' headers, one object each (for aiortc's path over a relay)."""
        assert self._template is not None
        fill = self._template.fill
        timestamp, sent_at = numbered.timestamp, numbered.sent_at
        last = len(numbered.payloads) - 1
        sequence = numbered.first
        headers = []
        for index in range(last + 1):
            headers.append(fill(sequence, timestamp, index == last, sent_at))
            sequence = (sequence + 1) & 0xFFFF
        return headers

    def _protector_for(self, dtls: RTCDtlsTransport) -> FrameProtector:
        protector = self._protector
        if protector is None or protector.session is not dtls._tx_srtp:
            protector = self._protector = FrameProtector(dtls._tx_srtp)
        return protector

    def _send_frame(
        self, dtls: RTCDtlsTransport, socket: PairSocket, frame: _SentFrame, payload_bytes: int
    ) -> None:
        """A numbered frame's packets onto `socket`: every frame of a viewer's, so one
        header per frame rather than per packet."""
        assert self._template is not None
        header = self._template.frame_header(frame.timestamp, frame.sent_at)
        protector = self._protector_for(dtls)
        datagrams, size = protector.protect_frame(
            header, frame.first, frame.payloads, payload_bytes
        )
        socket.send(datagrams)
        self._count_sent(dtls, len(datagrams), size)

    def _send(
        self, dtls: RTCDtlsTransport, socket: PairSocket, headers: list[bytearray],
        payloads: tuple[bytes, ...],
    ) -> None:  # fmt: skip
        datagrams = self._protector_for(dtls).protect(headers, payloads)
        socket.send(datagrams)
        self._count_sent(dtls, len(datagrams), sum(map(len, datagrams)))

    @staticmethod
    def _count_sent(dtls: RTCDtlsTransport, packets: int, size: int) -> None:
        """The transport's own statistics, as its `_send_rtp` keeps them."""
        counters = dtls.__dict__
        counters[_TX_BYTES] += size
        counters[_TX_PACKETS] += packets

    def _sent(self, numbered: _SentFrame, ntp: int, payload_bytes: int) -> None:
        """Count the frame as sent: its numbers taken, its payloads kept for NACKs, and
        the counters aiortc's sender reports and statistics read."""
        count = len(numbered.payloads)
        self._remember(numbered)
        self._sequence = (numbered.first + count) & 0xFFFF
        counters = self._sender.__dict__
        counters[_NTP] = ntp
        counters[_RTP] = numbered.timestamp
        counters[_OCTETS] += payload_bytes
        counters[_PACKETS] += count

    def _remember(self, frame: _SentFrame) -> None:
        self._history.append(frame)
        self._history_packets += len(frame.payloads)
        while self._history_packets > HISTORY_PACKETS:
            self._history_packets -= len(self._history.popleft().payloads)

    def _find(self, sequence_number: int) -> tuple[_SentFrame, int] | None:
        for frame in reversed(self._history):
            index = (sequence_number - frame.first) & 0xFFFF
            if index < len(frame.payloads):
                return frame, index
        return None

    def _probe_report(self, ntp: int) -> bytes | None:
        """A sender report every PROBE_REPORT_INTERVAL while probing (None between),
        not yet protected. The viewer's next receiver report times the round trip from
        the last sender report it had: aiortc sends one every 0.5-1.5 s, so the queue a
        probe fills would show a second or two late, past the point where the path
        drops. Made as aiortc's are (its counters, its CNAME, its record of when:
        rtcp_watch.py reads it), recorded as sent: the caller sends it at once."""
        now = self._clock()
        if now - self._reported_at < PROBE_REPORT_INTERVAL:
            return None
        self._reported_at = now
        sender = self._sender
        counters = sender.__dict__
        packets: list[rtp.AnyRtcpPacket] = [
            rtp.RtcpSrPacket(
                ssrc=sender._ssrc,
                sender_info=rtp.RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=counters[_RTP],
                    packet_count=counters[_PACKETS] & 0xFFFFFFFF,
                    octet_count=counters[_OCTETS] & 0xFFFFFFFF,
                ),
            )
        ]
        cname = counters.get(_SENDER + "cname")
        if cname is not None:
            source = rtp.RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])
            packets.append(rtp.RtcpSdesPacket(chunks=[source]))
        lsr, sent = (ntp >> 16) & 0xFFFFFFFF, time.time()
        counters[_SENDER + "lsr"], counters[_SENDER + "lsr_time"] = lsr, sent
        # The viewer's report may answer any of the last few: a queue delays them.
        self._reports_sent[lsr] = sent
        if len(self._reports_sent) > KEPT_REPORTS:
            del self._reports_sent[next(iter(self._reports_sent))]
        return b"".join(bytes(p) for p in packets)

    def report_sent_at(self, lsr: int) -> float | None:
        """When (time.time()) the sender report with this LSR field was sent, if it
        was one of the last few sent while probing."""
        return self._reports_sent.get(lsr)

    def _rtx_header(self, rtx_type: int) -> HeaderTemplate:
        if self._rtx_template is None:
            self._rtx_template = HeaderTemplate.build(
                self._get("rtp_header_extensions_map"), rtx_type, self._sender._rtx_ssrc,
                self._get("mid"),
            )  # fmt: skip
        return self._rtx_template

    def _rtx_copy(
        self, rtx_type: int, frame: _SentFrame, index: int, sent_at: int
    ) -> tuple[bytearray, bytes]:
        """Packet `index` of `frame` as RTX (RFC 4588: its own payload type, SSRC and
        sequence, the original sequence number first in the payload): (header, payload)."""
        header = self._rtx_header(rtx_type).fill(
            self._rtx_sequence, frame.timestamp, index == len(frame.payloads) - 1, sent_at
        )
        self._rtx_sequence = uint16_add(self._rtx_sequence, 1)
        original = (frame.first + index) & 0xFFFF
        return header, original.to_bytes(2, "big") + frame.payloads[index]

    def _padding(self, frame: _SentFrame) -> tuple[list[bytearray], tuple[bytes, ...]] | None:
        """RTX copies of `frame`'s packets (RFC 4588; the viewer keeps the first copy of
        each and drops the rest), as many as `padding_bitrate` makes due since the last
        frame: (headers, payloads), or None. Real packets rather than padding-only
        ones: a probe of the same rate in fewer, fuller datagrams costs less to send."""
        rtx_type = self._get("rtx_payload_type")
        now = self._clock()
        last, self._padding_at = self._padding_at, now
        if rtx_type is None or last is None:
            return None
        due = self._padding_credit + self.padding_bitrate * (now - last) / 8
        # A stalled stream must not come back with a burst.
        self._padding_credit = min(due, self.padding_bitrate * MAX_PADDING_SECONDS / 8)
        headers: list[bytearray] = []
        payloads: list[bytes] = []
        while self._padding_credit > 0 and len(headers) < MAX_PADDING_PACKETS:
            header, payload = self._rtx_copy(
                rtx_type, frame, len(headers) % len(frame.payloads), frame.sent_at
            )
            headers.append(header)
            payloads.append(payload)
            self._padding_credit -= len(header) + len(payload)
        return (headers, tuple(payloads)) if headers else None

    def _may_repair(self, sequence_number: int, size: int) -> bool:
        """Whether to answer a NACK for `sequence_number` now. Not twice within a round
        trip (the viewer asks again before the first answer can have arrived), and
        within `repair_bitrate`: on a path that drops what it cannot carry, each
        answer sent into it is more to drop, and repairs alone would fill it."""
        now = self._clock()
        last = self._repaired.get(sequence_number)
        if last is not None and now - last < max(self.round_trip, MIN_REPAIR_GAP):
            return False
        if self.repair_bitrate is not None:
            elapsed = now - self._repair_at
            # At least one packet's worth: else a low enough rate would answer nothing.
            cap = max(self.repair_bitrate * REPAIR_SECONDS / 8, MAX_PACKET)
            self._repair_credit = min(self._repair_credit + self.repair_bitrate * elapsed / 8, cap)
            self._repair_at = now
            if self._repair_credit < size:
                return False
            self._repair_credit -= size
        self._repaired[sequence_number] = now
        if len(self._repaired) > HISTORY_PACKETS:
            del self._repaired[next(iter(self._repaired))]  # the oldest
        return True

    async def retransmit(self, sequence_number: int) -> None:
        """aiortc's `_retransmit`: a packet the viewer reported lost, again, as RTX
        where negotiated."""
        found = self._find(sequence_number)
        if found is None or self._template is None:
            return
        frame, index = found
        if not self._may_repair(sequence_number, len(frame.payloads[index])):
            return
        rtx_type = self._get("rtx_payload_type")
        if rtx_type is None:
            # The very packet again: same number, same bytes (see _SentFrame.sent_at).
            marker = index == len(frame.payloads) - 1
            header = self._template.fill(sequence_number, frame.timestamp, marker, frame.sent_at)
            payload = frame.payloads[index]
        else:
            sent_at = abs_send_time(ntp_now())
            header, payload = self._rtx_copy(rtx_type, frame, index, sent_at)
        await self._sender.transport._send_rtp(bytes(header) + payload)
