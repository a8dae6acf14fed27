"""Audio a peer sends as plain RTP (an ONVIF back-channel, a SIP phone), decoded for
the speaker. Such peers stamp their own SSRC, sequence and timestamps: within one
SSRC a packet not newer than the last one taken is a UDP reorder or a copy, and is
dropped; a new SSRC, or one back after a pause, starts afresh."""

from __future__ import annotations

from dataclasses import dataclass

import av
from aiortc.rtp import RtpPacket

MAX_PACKET = 1500  # bytes of RTP; audio at 20-60 ms per packet is well under


@dataclass(frozen=True)
class Decoding:
    decoder: str  # FFmpeg's decoder
    sample_rate: int  # of the decoded audio (G.722's is 16 kHz on an 8 kHz RTP clock)


# RFC 3551's static payload types for G.711.
G711 = {0: Decoding("pcm_mulaw", 8000), 8: Decoding("pcm_alaw", 8000)}


class RtpAudioIn:
    """`decodings` by payload type; packets of other types are not this object's."""

    def __init__(self, decodings: dict[int, Decoding], restart_after: float) -> None:
        self._decodings = decodings
        self._restart_after = restart_after
        self._decoders: dict[int, av.AudioCodecContext] = {}
        self._last: tuple[int, int] | None = None  # (SSRC, sequence) last taken

    def parse(self, data: bytes) -> RtpPacket | None:
        """The RTP packet in `data`, or None when it is not one (a NAT hole punch, a
        stray datagram)."""
        if len(data) > MAX_PACKET or len(data) < 12 or data[0] >> 6 != 2:
            return None
        try:
            return RtpPacket.parse(data)
        except ValueError:
            return None

    def takes(self, packet: RtpPacket) -> bool:
        return packet.payload_type in self._decodings and bool(packet.payload)

    def newer(self, packet: RtpPacket, quiet_for: float) -> bool:
        """Whether `packet` comes after the last one taken (and takes it if so)."""
        last = self._last
        if last is not None and last[0] == packet.ssrc and quiet_for < self._restart_after:
            if (last[1] - packet.sequence_number) % 65536 < 32768:
                return False
        self._last = (packet.ssrc, packet.sequence_number)
        return True

    def decode(self, packet: RtpPacket) -> list[av.AudioFrame]:
        decoder = self._decoders.get(packet.payload_type)
        if decoder is None:
            decoding = self._decodings[packet.payload_type]
            made = av.CodecContext.create(decoding.decoder, "r")
            assert isinstance(made, av.AudioCodecContext)
            decoder = made
            decoder.sample_rate = decoding.sample_rate
            decoder.layout = "mono"
            self._decoders[packet.payload_type] = decoder
        return list(decoder.decode(av.Packet(packet.payload)))
