"""RTP payloads built once per encoded frame instead of once per viewer.

Splitting an H.264 access unit into NAL units and fragmenting it (FU-A / STAP-A), or
adding VP8 payload descriptors, gives the same bytes for every viewer; only the RTP
header, SRTP and the send are per viewer. aiortc's payloaders do the format work; this
module decides that it happens once, in the encoder's thread.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder


class Packetizer(ABC):
    @abstractmethod
    def payloads(self, data: bytes) -> tuple[bytes, ...]: ...


class H264Packetizer(Packetizer):
    def payloads(self, data: bytes) -> tuple[bytes, ...]:
        return tuple(H264Encoder._packetize(H264Encoder._split_bitstream(data)))


class Vp8Packetizer(Packetizer):
    def __init__(self) -> None:
        # One picture-id sequence for the shared stream; a viewer that skips frames sees
        # a gap, as it would after loss, and resumes at a keyframe.
        self._picture_id = random.randint(0, (1 << 15) - 1)

    def payloads(self, data: bytes) -> tuple[bytes, ...]:
        result = tuple(Vp8Encoder._packetize(data, self._picture_id))
        self._picture_id = (self._picture_id + 1) % (1 << 15)
        return result


class AacPacketizer(Packetizer):
    """RFC 3640 AAC-hbr: one access unit per payload, after a 16-bit AU-headers-length
    (16 bits of headers) and its AU-header (13-bit size, 3-bit index 0)."""

    def payloads(self, data: bytes) -> tuple[bytes, ...]:
        if len(data) >= 1 << 13:
            return ()  # not an AAC frame this encoder makes (at most 6144 bits a channel)
        return (b"\x00\x10" + (len(data) << 3).to_bytes(2, "big") + data,)


class WholeFramePacketizer(Packetizer):
    """Audio codecs: one encoded frame is one RTP payload."""

    def payloads(self, data: bytes) -> tuple[bytes, ...]:
        return (data,)
