"""One viewer's RTP header, made once and filled per packet.

Per packet, aiortc builds an RtpPacket object, reads the NTP clock twice and
serializes the header and its extensions (peercam's playout-delay map unpacks and
repacks them again). For one viewer only the sequence number, the timestamp, the
marker and abs-send-time ever change, so the header is serialized once, by aiortc
itself with the sender's own extension map (the same ids, order and one- or two-byte
form as its own packets), and those fields are written into a copy.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from aiortc import rtp

SEQUENCE = struct.Struct("!H")  # at offset 2
MARKER = 0x80  # in byte 1, beside the payload type
_TIMESTAMP = struct.Struct("!I")  # at offset 4
_NTP_TO_UNIX = 2_208_988_800  # seconds from 1900 (NTP's epoch) to 1970


@dataclass(frozen=True)
class HeaderTemplate:
    header: bytes
    payload_type: int
    abs_send_time_at: int | None  # where its 3 bytes are, if negotiated

    @classmethod
    def build(
        cls, extensions: rtp.HeaderExtensionsMap, payload_type: int, ssrc: int, mid: str | None
    ) -> HeaderTemplate:
        """The header `extensions` gives a packet of `ssrc` carrying `mid`. Serialized
        twice, abs-send-time all zeros and all ones: the bytes that differ are where
        it goes (none if the map has no id for it)."""
        packet = rtp.RtpPacket(payload_type=payload_type, ssrc=ssrc)
        packet.extensions.mid = mid
        packet.extensions.abs_send_time = 0
        zeros = packet.serialize(extensions)
        packet.extensions.abs_send_time = 0xFFFFFF
        ones = packet.serialize(extensions)
        differ = [i for i, (a, b) in enumerate(zip(zeros, ones, strict=True)) if a != b]
        if differ and (len(differ) != 3 or differ[2] - differ[0] != 2):
            raise RuntimeError("abs-send-time is not 3 contiguous bytes in aiortc's header")
        return cls(zeros, payload_type, differ[0] if differ else None)

    def frame_header(self, timestamp: int, abs_send_time: int) -> bytearray:
        """The header all packets of one frame share: timestamp and abs-send-time
        written, marker clear; each packet then takes its own sequence number
        (`SEQUENCE` at offset 2) and the frame's last one the marker."""
        header = bytearray(self.header)
        header[1] = self.payload_type
        _TIMESTAMP.pack_into(header, 4, timestamp)
        if self.abs_send_time_at is not None:
            at = self.abs_send_time_at
            header[at : at + 3] = abs_send_time.to_bytes(3, "big")
        return header

    def fill(
        self, sequence_number: int, timestamp: int, marker: bool, abs_send_time: int
    ) -> bytearray:
        """A header for one packet (a new buffer: the payload follows it)."""
        header = self.frame_header(timestamp, abs_send_time)
        if marker:
            header[1] |= MARKER
        SEQUENCE.pack_into(header, 2, sequence_number)
        return header


def abs_send_time(ntp_time: int) -> int:
    """abs-send-time (seconds in 6.18 fixed point) from an NTP time, as aiortc has it."""
    return (ntp_time >> 14) & 0xFFFFFF


def ntp_now() -> int:
    """The NTP time now (64-bit fixed point), as aiortc's `clock.current_ntp_time`
    gives it, without building two datetime objects for each viewer's frame."""
    # Masked as NTP's era 0 wraps (February 2036), where aiortc's would overflow.
    return int((time.time() + _NTP_TO_UNIX) * 4294967296.0) & 0xFFFF_FFFF_FFFF_FFFF
