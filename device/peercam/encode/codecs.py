"""The codecs peercam sends, with what RTP needs to know about each."""

from __future__ import annotations

from dataclasses import dataclass

from peercam.media import Kind


@dataclass(frozen=True)
class CodecSpec:
    name: str  # peercam's name: "h264", "vp8", "opus"
    kind: Kind
    mime_type: str  # as in SDP and RTCRtpCodecParameters
    clock_rate: int
    has_keyframes: bool


H264 = CodecSpec("h264", "video", "video/H264", 90_000, True)
VP8 = CodecSpec("vp8", "video", "video/VP8", 90_000, True)
OPUS = CodecSpec("opus", "audio", "audio/opus", 48_000, False)
PCMU = CodecSpec("pcmu", "audio", "audio/PCMU", 8_000, False)
PCMA = CodecSpec("pcma", "audio", "audio/PCMA", 8_000, False)

BY_NAME = {spec.name: spec for spec in (H264, VP8, OPUS, PCMU, PCMA)}
