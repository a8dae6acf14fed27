"""Reading a viewer's SDP offer: is it usable, and which codecs does it get.

Everything here runs before a peer connection exists, so a bad offer is refused with a
clear reason and costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiortc import RTCIceCandidate, RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import H264Profile, SessionDescription, parse_h264_profile_level_id

from peercam.encode.codecs import BY_NAME

MAX_MEDIA_SECTIONS = 8

_MIME = {name: spec.mime_type for name, spec in BY_NAME.items()}
# What the shared streams are, as a refused client needs to hear it: H.264 from
# libx264 and from the Pi's encoder alike is constrained baseline in FU-A packets.
_SENT = {
    "h264": "H.264 constrained baseline (profile-level-id 42e0xx) in packetization-mode=1",
    "vp8": "VP8",
}
_PROFILES = {
    H264Profile.PROFILE_CONSTRAINED_BASELINE: "constrained baseline",
    H264Profile.PROFILE_BASELINE: "baseline",
    H264Profile.PROFILE_MAIN: "main",
    H264Profile.PROFILE_CONSTRAINED_HIGH: "constrained high",
    H264Profile.PROFILE_HIGH: "high",
    H264Profile.PROFILE_PREDICTIVE_HIGH_444: "high 4:4:4 predictive",
}
# Formats that only ride along with a codec; naming them would not help.
_HELPERS = {"video/rtx", "video/red", "video/ulpfec", "video/flexfec-03"}
# An mDNS host candidate: the browser hides its address behind "<uuid>.local".
_MDNS_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ \S+\.local \d+ .*$", re.MULTILINE)


class OfferError(ValueError):
    """The offer cannot be answered; the message says why, in one line."""


@dataclass(frozen=True)
class OfferPlan:
    video_codec: str
    audio_codec: str | None
    ice_ufrag: str
    # The viewer offered to send audio too (its Talk button): answer sendrecv.
    audio_sendrecv: bool
    # The offer with its mDNS candidates removed, and those candidates, to be resolved
    # after the answer is sent: answering must never wait on name resolution.
    sdp: str
    mdns_candidates: list[RTCIceCandidate] = field(default_factory=list)


def plan_offer(sdp: str, video_codecs: Sequence[str], audio_codecs: Sequence[str]) -> OfferPlan:
    """Validate `sdp` and choose the first of `video_codecs` (and of `audio_codecs`) it accepts."""
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("body is not an SDP offer (it must start with v=0)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc's parser raises whatever its input provokes
        raise OfferError(f"malformed SDP: {_one_line(error)}") from None
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise OfferError(
            f"too many media sections ({len(description.media)} > {MAX_MEDIA_SECTIONS})"
        )
    videos = [m for m in description.media if m.kind == "video"]
    audios = [m for m in description.media if m.kind == "audio"]
    if not videos:
        raise OfferError("the offer has no video media section")
    if len(videos) > 1 or len(audios) > 1:
        raise OfferError("the offer may hold at most one video and one audio section")
    _check_mids(description)
    for media in videos + audios:
        if media.ice is None or not media.ice.usernameFragment:
            raise OfferError(f"the {media.kind} section has no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise OfferError(f"the {media.kind} section has no DTLS fingerprint")
        if media.direction not in ("recvonly", "sendrecv"):
            raise OfferError(
                f"the {media.kind} section does not receive (direction {media.direction})"
            )

    video_codec = _first_common(videos[0], "video", video_codecs)
    if video_codec is None:
        offered = _describe_formats(videos[0].rtp.codecs)
        raise OfferError(
            f"no common video codec: peercam sends {', '.join(_SENT[c] for c in video_codecs)};"
            f" the offer has {', '.join(offered) or 'none'}"
        )
    audio_codec = _first_common(audios[0], "audio", audio_codecs) if audios else None
    ufrag = videos[0].ice.usernameFragment if videos[0].ice else None
    assert ufrag  # checked above

    mdns = []
    for index, media in enumerate(description.media):
        for candidate in media.ice_candidates:
            if candidate.ip.endswith(".local"):
                candidate.sdpMid, candidate.sdpMLineIndex = media.rtp.muxId, index
                mdns.append(candidate)
    stripped = _MDNS_CANDIDATE.sub("", sdp.replace("\r\n", "\n")).replace("\n\n", "\n")
    return OfferPlan(
        video_codec=video_codec,
        audio_codec=audio_codec,
        ice_ufrag=ufrag,
        audio_sendrecv=bool(audios) and audios[0].direction == "sendrecv",
        sdp=stripped.replace("\n", "\r\n"),
        mdns_candidates=mdns,
    )


def _check_mids(description: SessionDescription) -> None:
    """Every section names its mid once, and BUNDLE names only those (RFC 8843); aiortc
    assumes both and fails deep inside the answer otherwise."""
    mids = [m.rtp.muxId for m in description.media]
    if not all(mids):
        raise OfferError("every media section needs an a=mid line")
    if len(set(mids)) != len(mids):
        raise OfferError("two media sections share an a=mid")
    for group in description.group:
        unknown = [str(item) for item in group.items if str(item) not in mids]
        if unknown:
            raise OfferError(f"a=group:{group.semantic} names unknown mids {', '.join(unknown)}")


def _first_common(media: object, kind: str, wanted: Sequence[str]) -> str | None:
    common = find_common_codecs(CODECS[kind], media.rtp.codecs)  # type: ignore[attr-defined]
    mimes = {codec.mimeType.lower() for codec in common}
    for name in wanted:
        if _MIME[name].lower() in mimes:
            return name
    return None


def _describe_formats(codecs: list[RTCRtpCodecParameters]) -> list[str]:
    """Each offered format once, H.264 with the profile and mode that decide a match."""
    described: list[str] = []
    for codec in codecs:
        if codec.mimeType.lower() in _HELPERS:
            continue
        text = _describe_h264(codec) if codec.mimeType.lower() == "video/h264" else codec.mimeType
        if text not in described:
            described.append(text)
    return described


def _describe_h264(codec: RTCRtpCodecParameters) -> str:
    # The defaults when absent are RFC 6184's (mode 0) and aiortc's (42e01f).
    level_id = str(codec.parameters.get("profile-level-id", "42e01f"))
    mode = codec.parameters.get("packetization-mode", "0")
    try:
        profile = _PROFILES[parse_h264_profile_level_id(level_id)[0]]
    except ValueError:
        profile = "unknown profile"
    return f"H.264 {profile} (profile-level-id {level_id}) in packetization-mode={mode}"


def codec_preferences(kind: str, codec: str) -> list[RTCRtpCodecCapability]:
    """Capabilities to give `setCodecPreferences` so that only `codec` (and its RTX) is used."""
    mime = _MIME[codec].lower()
    chosen = [
        capability
        for capability in RTCRtpSender.getCapabilities(kind).codecs
        if capability.mimeType.lower() in (mime, f"{kind}/rtx")
    ]
    # The answer names the first H.264 format both sides have: make it the profile
    # peercam sends (constrained baseline, 42e0xx, from libx264 and from the Pi's
    # encoder alike) rather than aiortc's first, plain baseline (4200xx).
    return sorted(chosen, key=lambda capability: not _constrained_baseline(capability))


def _constrained_baseline(capability: RTCRtpCodecCapability) -> bool:
    profile = str(capability.parameters.get("profile-level-id", "")).lower()
    return profile.startswith("42e0")


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
