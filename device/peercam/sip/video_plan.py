"""Video to a phone that takes it (issue 27's option): H.264 from the camera's shared
encoder, in the packets every viewer gets (packetization-mode 1, constrained
baseline), one way: the door shows its camera and takes no picture back."""

from __future__ import annotations

from dataclasses import dataclass

from peercam.sip.sdp import AudioDescription, Format

PAYLOAD_TYPE = 96
# Constrained baseline, level 3.1 (720p30): what libx264 and the Pi's encoder send here.
FMTP = "profile-level-id=42e01f;packetization-mode=1"


@dataclass(frozen=True)
class VideoPlan:
    payload_type: int
    remote: tuple[str, int]


def offer_format() -> Format:
    return Format(PAYLOAD_TYPE, "H264", 90_000, fmtp=FMTP)


def _takes(format_: Format) -> bool:
    """An H.264 format peercam's packets fit: mode 1 (FU-A), baseline profiles."""
    if format_.name != "H264" or format_.clock_rate != 90_000:
        return False
    params = dict(
        item.strip().partition("=")[::2] for item in format_.fmtp.split(";") if item.strip()
    )
    profile = params.get("profile-level-id", "42001f").lower()
    # 42: baseline (peercam's constrained baseline is decodable by it); e0/c0/80/40
    # constraint flags do not matter to a baseline decoder.
    return params.get("packetization-mode", "0") == "1" and profile.startswith("42")


def from_answer(video: AudioDescription | None) -> VideoPlan | None:
    """The video the phone took in its answer to peercam's offer, if it took any."""
    if video is None or video.port == 0 or video.direction in ("sendonly", "inactive"):
        return None
    chosen = next((f for f in video.formats if _takes(f)), None)
    if chosen is None:
        return None
    return VideoPlan(chosen.payload_type, (video.address, video.port))


def from_offer(video: AudioDescription | None) -> tuple[VideoPlan, Format] | None:
    """The video for a phone's offer, and the format peercam answers with (the
    offer's payload type); None when there is none peercam's packets fit."""
    if video is None or video.port == 0 or video.direction in ("sendonly", "inactive"):
        return None
    chosen = next((f for f in video.formats if _takes(f)), None)
    if chosen is None:
        return None
    answer = Format(chosen.payload_type, "H264", 90_000, fmtp=FMTP)
    return VideoPlan(chosen.payload_type, (video.address, video.port)), answer
