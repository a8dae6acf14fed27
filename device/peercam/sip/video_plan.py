"""Video to a phone that takes it (issue 27's option): H.264 from the camera's shared
encoder, in the packets every viewer gets (packetization-mode 1, constrained
baseline), one way: the door shows its camera and takes no picture back."""

from __future__ import annotations

from dataclasses import dataclass

from peercam.encode.video import VideoSettings, h264_level
from peercam.sip.sdp import AudioDescription, Format

PAYLOAD_TYPE = 96
CONSTRAINED_BASELINE = "42e0"  # profile_idc and constraint flags of what peercam sends


@dataclass(frozen=True)
class VideoPlan:
    payload_type: int
    remote: tuple[str, int]


def offer_format(width: int, height: int, fps: int) -> Format:
    """peercam's H.264 in an offer: constrained baseline at the level of the stream it
    will send (encode/video.py picks the same for libx264: the lowest that covers it)."""
    level = int(h264_level(VideoSettings(width, height, fps, 0, 0.0)))
    fmtp = f"profile-level-id={CONSTRAINED_BASELINE}{level:02x};packetization-mode=1"
    return Format(PAYLOAD_TYPE, "H264", 90_000, fmtp=fmtp)


def _params(format_: Format) -> dict[str, str]:
    return dict(
        item.strip().partition("=")[::2] for item in format_.fmtp.split(";") if item.strip()
    )


def _takes(format_: Format) -> bool:
    """An H.264 format peercam's packets fit: mode 1 (FU-A), baseline profiles."""
    if format_.name != "H264" or format_.clock_rate != 90_000:
        return False
    params = _params(format_)
    profile = params.get("profile-level-id", "42001f").lower()
    # 42: baseline (peercam's constrained baseline is decodable by it); e0/c0/80/40
    # constraint flags do not matter to a baseline decoder.
    return params.get("packetization-mode", "0") == "1" and profile.startswith("42")


def from_answer(video: AudioDescription | None) -> VideoPlan | None:
    """The video the phone took in its answer to peercam's offer, if it took any."""
    chosen = _chosen(video)
    if video is None or chosen is None:
        return None
    return VideoPlan(chosen.payload_type, (video.address, video.port))


def _chosen(video: AudioDescription | None) -> Format | None:
    """The first H.264 format peercam can send on a video stream that is open, takes
    pictures and is plain RTP (SRTP it does not speak to phones: refused rather than
    sent in the clear)."""
    if video is None or video.port == 0 or "SAVP" in video.profile:
        return None
    if video.direction in ("sendonly", "inactive"):
        return None
    return next((f for f in video.formats if _takes(f)), None)


def from_offer(video: AudioDescription | None) -> tuple[VideoPlan, Format] | None:
    """The video for a phone's offer, and the format peercam answers with (the
    offer's payload type); None when there is none peercam's packets fit."""
    chosen = _chosen(video)
    if video is None or chosen is None:
        return None
    # RFC 6184 §8.2.2: the answer keeps the offer's profile (and level: the phone's
    # decoder's); peercam's constrained baseline is within any baseline offered.
    profile = _params(chosen).get("profile-level-id", "42e01f")
    answer = Format(
        chosen.payload_type, "H264", 90_000, fmtp=f"profile-level-id={profile};packetization-mode=1"
    )
    return VideoPlan(chosen.payload_type, (video.address, video.port)), answer
