"""Choosing codecs from an offer and refusing unusable ones, before any peer exists."""

from __future__ import annotations

import re

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from peercam.rtc.negotiation import OfferError, codec_preferences, plan_offer
from tests.whep_viewer import video_capabilities

BOTH = ["h264", "vp8"]


async def make_offer(video_mimes: list[str] | None = None, audio: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver("video", direction="recvonly")
    if video_mimes:
        video.setCodecPreferences([c for c in video_capabilities() if c.mimeType in video_mimes])
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_h264_is_preferred_when_offered() -> None:
    plan = plan_offer(await make_offer(), BOTH, ["opus"])
    assert (plan.video_codec, plan.audio_codec) == ("h264", "opus")


async def test_vp8_when_h264_is_absent() -> None:
    plan = plan_offer(await make_offer(["video/VP8", "video/rtx"]), BOTH, ["opus"])
    assert plan.video_codec == "vp8"


async def test_vp8_when_the_offered_h264_profile_is_incompatible() -> None:
    offer = await make_offer()
    # Only packetization-mode 0 H.264 (single NAL units) and High profile: neither fits.
    offer = offer.replace("packetization-mode=1", "packetization-mode=0")
    offer = re.sub(r"profile-level-id=42[0-9a-f]{4}", "profile-level-id=640032", offer)
    plan = plan_offer(offer, BOTH, ["opus"])
    assert plan.video_codec == "vp8"


async def test_configured_codec_order_and_video_only_offers() -> None:
    plan = plan_offer(await make_offer(audio=False), ["vp8", "h264"], ["opus"])
    assert plan.video_codec == "vp8" and plan.audio_codec is None


async def test_no_common_codec_names_both_sides() -> None:
    offer = await make_offer(["video/VP8", "video/rtx"])
    with pytest.raises(OfferError, match=r"peercam sends H\.264 .*; the offer has video/VP8$"):
        plan_offer(offer, ["h264"], ["opus"])


@pytest.mark.parametrize(
    ("profile", "mode", "said"),
    [
        ("640c1f", "1", "H.264 constrained high (profile-level-id 640c1f) in packetization-mode=1"),
        ("640032", "1", "H.264 high (profile-level-id 640032) in packetization-mode=1"),
        (
            "42e01f",
            "0",
            "H.264 constrained baseline (profile-level-id 42e01f) in packetization-mode=0",
        ),
        ("4d001f", "1", "H.264 main (profile-level-id 4d001f) in packetization-mode=1"),
    ],
)
async def test_an_h264_offer_that_does_not_fit_is_told_which_profile_or_mode(
    profile: str, mode: str, said: str
) -> None:
    offer = await make_offer(["video/H264"])
    offer = re.sub(r"profile-level-id=[0-9a-f]{6}", f"profile-level-id={profile}", offer)
    offer = re.sub(r"packetization-mode=\d", f"packetization-mode={mode}", offer)
    with pytest.raises(OfferError) as refused:
        plan_offer(offer, ["h264"], ["opus"])
    message = str(refused.value)
    assert message.startswith("no common video codec: peercam sends H.264 constrained baseline")
    assert "packetization-mode=1; the offer has " in message
    assert said in message.split("; the offer has ", 1)[1], message


async def test_mdns_candidates_are_set_aside_for_later() -> None:
    offer = await make_offer()
    line = (
        "a=candidate:9 1 udp 2122262783 1f4712db-ea17-4bcf-a596-105139dfd8bf.local 54321 typ host"
    )
    offer = offer.replace("a=end-of-candidates", line + "\r\na=end-of-candidates", 1)
    plan = plan_offer(offer, BOTH, ["opus"])
    assert ".local" not in plan.sdp
    assert [c.ip for c in plan.mdns_candidates] == ["1f4712db-ea17-4bcf-a596-105139dfd8bf.local"]
    assert plan.mdns_candidates[0].port == 54321


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.replace("a=recvonly", "a=sendonly"), "does not receive"),
        (lambda s: re.sub(r"a=ice-ufrag:\S+\r\n", "", s), "no ICE credentials"),
        (lambda s: re.sub(r"a=fingerprint:.*\r\n", "", s), "no DTLS fingerprint"),
        (lambda s: s + s[s.index("m=video") :], "at most one video"),
    ],
)
async def test_unusable_offers_are_refused_with_a_reason(mutate, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OfferError, match=message):
        plan_offer(mutate(await make_offer()), BOTH, ["opus"])


async def test_the_answer_names_constrained_baseline_which_is_what_peercam_sends() -> None:
    # The offer lists plain baseline (42001f) first, as aiortc and Chromium do; peercam
    # sends constrained baseline (libx264's "baseline", and the Pi's encoder asked for
    # "constrained baseline"), so the answer's first H.264 format must say so.
    offer = await make_offer(["video/H264", "video/rtx"], audio=False)
    assert offer.index("profile-level-id=42001f") < offer.index("profile-level-id=42e01f")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences("video", "h264"))
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
    finally:
        await pc.close()
    video = answer[answer.index("m=video") :]
    first_payload = video.split("\r\n")[0].split()[3]
    fmtp = re.search(rf"a=fmtp:{first_payload} (\S+)", video)
    assert fmtp is not None and "profile-level-id=42e01f" in fmtp.group(1), video
