"""A viewer's RTP, sent a frame at a time.

The shared encoder packetizes each frame once; what is left per viewer is to put a
header on each payload, protect it with the viewer's SRTP key and send it. aiortc's
sender does that packet by packet through objects, coroutines and one system call
each (about 30 us a packet on the test machine); this does it per frame: a header
template filled in place (rtp_header.py), SRTP on each packet, and the frame's
datagrams handed to the socket together (pair_socket.py).

It takes over two methods of aiortc's RTCRtpSender, as instance attributes: the
loop its `send()` starts (`_run_rtp`) and its NACK answer (`_retransmit`). The rest
of the sender is aiortc's and keeps working from the same state: sender reports read
the four counters written here once a frame, PLI/FIR go to the shared encoder
(shared_track.py), `stop()` waits on the started/exited events set here. A relayed
pair (TURN over UDP, TCP or TLS) has no socket of its own: there each packet goes
through aiortc's DTLS transport as before, header template and history still ours.
tests/test_frame_sender.py fails loudly if an aiortc upgrade moves any of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.utils import random32, uint16_add, uint32_add

from peercam.media import EncodedFrame
from peercam.rtc.pair_socket import PairSocket
from peercam.rtc.rtp_header import HeaderTemplate, abs_send_time

logger = logging.getLogger(__name__)

# What a NACK can still be answered from: more than a second of 720p (aiortc keeps 128
# packets, fewer than one 1080p keyframe has).
HISTORY_PACKETS = 1024

_SENDER = "_RTCRtpSender__"
_DTLS = "_RTCDtlsTransport__"
# What of aiortc's sender and DTLS transport this relies on (tests/test_frame_sender.py).
SENDER_ATTRIBUTES = tuple(
    _SENDER + name
    for name in (
        "mid", "rtp_header_extensions_map", "rtx_payload_type", "track", "rtp_started",
        "rtp_exited", "ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count",
    )
)  # fmt: skip
SENDER_METHODS = ("_run_rtp", "_retransmit", "_ssrc", "_rtx_ssrc", "_enabled", "transport")
DTLS_ATTRIBUTES = ("_state", "_tx_srtp", _DTLS + "tx_bytes", _DTLS + "tx_packets")


@dataclass(frozen=True)
class _SentFrame:
    first: int  # sequence number of its first packet
    timestamp: int
    payloads: tuple[bytes, ...]


class FrameSender:
    """Installed on one sender before its `send()`; lives as long as the sender."""

    def __init__(self, sender: RTCRtpSender) -> None:
        missing = [a for a in SENDER_ATTRIBUTES if not hasattr(sender, a)]
        missing += [a for a in SENDER_METHODS if not hasattr(sender, a)]
        if missing:
            raise RuntimeError(f"this aiortc version lacks the sender internals {missing}")
        self._sender = sender
        self._history: deque[_SentFrame] = deque()
        self._history_packets = 0
        self._rtx_sequence = random_sequence_number()
        self._socket: PairSocket | None = None
        self._template: HeaderTemplate | None = None
        self._rtx_template: HeaderTemplate | None = None
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
            template = self._template = HeaderTemplate.build(
                self._get("rtp_header_extensions_map"),
                codec.payloadType,
                sender._ssrc,
                self._get("mid"),
            )
            sequence = random_sequence_number()
            origin = random32()
            while True:
                track = self._get("track")
                if track is None:
                    await asyncio.sleep(0.02)
                    continue
                frame: EncodedFrame = await track.recv()
                if not sender._enabled or not frame.payloads:
                    continue
                timestamp = uint32_add(origin, frame.rtp_timestamp)
                sequence = await self._send_frame(template, sequence, timestamp, frame.payloads)
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

    async def _send_frame(
        self, template: HeaderTemplate, first: int, timestamp: int, payloads: tuple[bytes, ...]
    ) -> int:
        dtls: RTCDtlsTransport = self._sender.transport
        if dtls._state != State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        ntp = clock.current_ntp_time()
        sent_at = abs_send_time(ntp)
        last = len(payloads) - 1
        sequence = first
        packets = []
        for index, payload in enumerate(payloads):
            header = template.fill(sequence, timestamp, index == last, sent_at)
            packets.append(bytes(header) + payload)
            sequence = uint16_add(sequence, 1)
        await self._transmit(dtls, packets)
        self._remember(_SentFrame(first, timestamp, payloads))
        sender = self._sender
        setattr(sender, _SENDER + "ntp_timestamp", ntp)
        setattr(sender, _SENDER + "rtp_timestamp", timestamp)
        octets = self._get("octet_count") + sum(len(p) for p in payloads)
        setattr(sender, _SENDER + "octet_count", octets)
        setattr(sender, _SENDER + "packet_count", self._get("packet_count") + len(payloads))
        return sequence

    async def _transmit(self, dtls: RTCDtlsTransport, packets: list[bytes]) -> None:
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if self._socket is None or self._socket.pair is not pair:
            if self._socket is not None:
                self._socket.close()
            self._socket = PairSocket(pair)
        if not self._socket.direct:
            # A relay: aiortc's own path, one packet at a time (it protects and counts).
            for packet in packets:
                await dtls._send_rtp(packet)
            return
        protect = dtls._tx_srtp.protect
        datagrams = [protect(packet) for packet in packets]
        self._socket.send(datagrams)
        # The transport's own statistics, as its `_send_rtp` keeps them.
        sent = sum(map(len, datagrams))
        setattr(dtls, _DTLS + "tx_bytes", getattr(dtls, _DTLS + "tx_bytes") + sent)
        setattr(dtls, _DTLS + "tx_packets", getattr(dtls, _DTLS + "tx_packets") + len(datagrams))

    def _remember(self, frame: _SentFrame) -> None:
        self._history.append(frame)
        self._history_packets += len(frame.payloads)
        while self._history_packets - len(self._history[0].payloads) >= HISTORY_PACKETS:
            self._history_packets -= len(self._history.popleft().payloads)

    def _find(self, sequence_number: int) -> tuple[_SentFrame, int] | None:
        for frame in reversed(self._history):
            index = (sequence_number - frame.first) & 0xFFFF
            if index < len(frame.payloads):
                return frame, index
        return None

    async def retransmit(self, sequence_number: int) -> None:
        """aiortc's `_retransmit`: a packet the viewer reported lost, again, as RTX
        (RFC 4588: its own payload type, SSRC and sequence, the original sequence
        number first in the payload) where negotiated."""
        found = self._find(sequence_number)
        if found is None or self._template is None:
            return
        frame, index = found
        sender = self._sender
        marker = index == len(frame.payloads) - 1
        payload = frame.payloads[index]
        sent_at = abs_send_time(clock.current_ntp_time())
        rtx_type = self._get("rtx_payload_type")
        if rtx_type is None:
            header = self._template.fill(sequence_number, frame.timestamp, marker, sent_at)
            packet = bytes(header) + payload
        else:
            if self._rtx_template is None:
                self._rtx_template = HeaderTemplate.build(
                    self._get("rtp_header_extensions_map"), rtx_type, sender._rtx_ssrc,
                    self._get("mid"),
                )  # fmt: skip
            header = self._rtx_template.fill(self._rtx_sequence, frame.timestamp, marker, sent_at)
            packet = bytes(header) + sequence_number.to_bytes(2, "big") + payload
            self._rtx_sequence = uint16_add(self._rtx_sequence, 1)
        await sender.transport._send_rtp(packet)
