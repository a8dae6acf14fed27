"""The codecs peercam sends: every fact about each in one table (what SDP and RTP
call it, how FFmpeg encodes and decodes it, how its frames become RTP payloads).
Everything else looks a codec up here by peercam's name for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peercam.encode.packetize import (
    AacPacketizer,
    H264Packetizer,
    Packetizer,
    Vp8Packetizer,
    WholeFramePacketizer,
)
from peercam.media import Kind


@dataclass(frozen=True)
class CodecSpec:
    name: str  # peercam's name: "h264", "vp8", "opus"
    kind: Kind
    mime_type: str  # as in SDP and RTCRtpCodecParameters
    clock_rate: int
    has_keyframes: bool
    encoder: str  # FFmpeg's software encoder (a board's hardware one is chosen apart)
    decoder: str  # FFmpeg's decoder, for snapshots and checks
    packetizer: Callable[[], Packetizer]  # a new one per shared stream
    # For plain RTP/AVP (RTSP): the payload type RFC 3551 gives it, if any (else a
    # dynamic one is chosen), and the channels its rtpmap names (Opus: always 2).
    static_payload_type: int | None = None
    rtpmap_channels: int | None = None
    # Its a=fmtp in plain RTP/AVP when fixed by how peercam encodes it (AAC's).
    rtsp_fmtp: str = ""
    # Audio encoded at another rate than its RTP clock counts (G.722: 16 kHz audio,
    # an 8 kHz clock, by an error RFC 3551 §4.5.2 keeps for compatibility); 0: the same.
    sample_rate: int = 0

    @property
    def audio_rate(self) -> int:
        return self.sample_rate or self.clock_rate

    @property
    def rtpmap(self) -> str:
        """As in `a=rtpmap:<pt> ...`: e.g. "H264/90000", "opus/48000/2"."""
        name = self.mime_type.split("/", 1)[1]
        channels = f"/{self.rtpmap_channels}" if self.rtpmap_channels else ""
        return f"{name}/{self.clock_rate}{channels}"


H264 = CodecSpec("h264", "video", "video/H264", 90_000, True, "libx264", "h264", H264Packetizer)
VP8 = CodecSpec("vp8", "video", "video/VP8", 90_000, True, "libvpx", "vp8", Vp8Packetizer)
OPUS = CodecSpec(
    "opus", "audio", "audio/opus", 48_000, False, "libopus", "opus", WholeFramePacketizer,
    rtpmap_channels=2,
)  # fmt: skip
PCMU = CodecSpec(
    "pcmu", "audio", "audio/PCMU", 8_000, False, "pcm_mulaw", "pcm_mulaw", WholeFramePacketizer,
    static_payload_type=0,
)  # fmt: skip
PCMA = CodecSpec(
    "pcma", "audio", "audio/PCMA", 8_000, False, "pcm_alaw", "pcm_alaw", WholeFramePacketizer,
    static_payload_type=8,
)  # fmt: skip
# Wideband for SIP phones that offer it (DECT handsets, desk phones); not for browsers.
G722 = CodecSpec(
    "g722", "audio", "audio/G722", 8_000, False, "g722", "g722", WholeFramePacketizer,
    static_payload_type=9, sample_rate=16_000,
)  # fmt: skip
# AAC-LC, 48 kHz mono, for NVRs that record or relay only AAC with their video
# (Frigate's recordings and its browser live view by MSE, Home Assistant's HLS
# stream). Not for browsers over WebRTC. config=1188 is its AudioSpecificConfig:
# object type 2 (LC), frequency index 3 (48 kHz), 1 channel.
AAC = CodecSpec(
    "aac", "audio", "audio/mpeg4-generic", 48_000, False, "aac", "aac", AacPacketizer,
    rtpmap_channels=1,
    rtsp_fmtp="streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
    "indexdeltalength=3;config=1188",
)  # fmt: skip

BY_NAME = {spec.name: spec for spec in (H264, VP8, OPUS, PCMU, PCMA, G722, AAC)}
