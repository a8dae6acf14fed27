"""RTP numbering for one consumer of the shared payloads (a media server's input, an
RTSP client): its own SSRC, sequence and time origin around payloads built once, and
the RTCP sender reports that tie its timestamps to the wall clock."""

from __future__ import annotations

import random
import time

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket, RtpPacket

from peercam.media import MEDIA_EPOCH

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


class RtpStream:
    """One media stream's RTP numbering: its own SSRC, sequence and time origin."""

    def __init__(self, payload_type: int, talkspurts: bool = False) -> None:
        self.payload_type = payload_type
        # Audio marks the first packet of a talkspurt (RFC 3551 §4.1), not each frame's
        # last: a phone may reset its jitter buffer at every marker. Without silence
        # suppression the stream is one talkspurt.
        self._talkspurts = talkspurts
        self._first = True
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(15)
        self._origin = random.getrandbits(32)

    def packets(self, payloads: tuple[bytes, ...], timestamp: int) -> list[bytes]:
        packets = []
        for index, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.payload_type,
                marker=int(self._first if self._talkspurts else index == len(payloads) - 1),
                sequence_number=self._sequence,
                timestamp=(self._origin + timestamp) & 0xFFFFFFFF,
                ssrc=self.ssrc,
                payload=payload,
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._first = False
            packets.append(packet.serialize())
        return packets

    def sender_report(self, clock_rate: int, packets: int, octets: int) -> bytes:
        """An RTCP SR for now: a receiver lines up audio and video by the wall-clock
        time each stream's reports give its RTP timestamps (FFmpeg does)."""
        now = time.time()
        ntp = int((now + NTP_EPOCH_OFFSET) * (1 << 32))
        media_now = int((time.monotonic() - MEDIA_EPOCH) * clock_rate)
        report = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp & 0xFFFFFFFFFFFFFFFF,
                rtp_timestamp=(self._origin + media_now) & 0xFFFFFFFF,
                packet_count=packets & 0xFFFFFFFF,
                octet_count=octets & 0xFFFFFFFF,
            ),
        )
        return bytes(report)

    @property
    def next_sequence(self) -> int:
        return self._sequence

    def timestamp_of(self, rtp_timestamp: int) -> int:
        """The RTP timestamp this stream sends for a frame's shared `rtp_timestamp`."""
        return (self._origin + rtp_timestamp) & 0xFFFFFFFF
