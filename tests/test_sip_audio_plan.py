"""What offer and answer settle for a call's audio (sip/audio_plan.py)."""

from __future__ import annotations

from peercam.encode.codecs import G722, OPUS, PCMA, PCMU
from peercam.sip import audio_plan, sdp, video_plan


def description(
    media: str, *attributes: str, port: int = 4000, profile: str = "RTP/AVP"
) -> sdp.AudioDescription:
    lines = ["v=0", "o=- 1 1 IN IP4 10.0.0.9", "s=-", "c=IN IP4 10.0.0.9", "t=0 0"]
    lines += [f"m=audio {port} {profile} {media}", *attributes]
    return sdp.parse_audio(("\r\n".join(lines) + "\r\n").encode())


def test_the_offer_lists_the_codecs_in_order_then_events_at_each_clock_rate() -> None:
    formats = audio_plan.offer_formats(["g722", "pcmu", "opus"])
    assert [(f.payload_type, f.name, f.clock_rate) for f in formats] == [
        (9, "G722", 8000), (0, "PCMU", 8000), (111, "OPUS", 48000),
        (101, "TELEPHONE-EVENT", 8000), (102, "TELEPHONE-EVENT", 48000),
    ]  # fmt: skip
    body = sdp.describe("10.0.0.2", 20000, formats, 1, 1).decode()
    assert "a=rtpmap:111 opus/48000/2" in body and "a=rtpmap:9 G722/8000" in body


def test_the_phones_answer_picks_the_codec_and_its_key_presses() -> None:
    offered = audio_plan.offer_formats(["g722", "pcmu"])
    answer = description("0 101", "a=rtpmap:101 telephone-event/8000", "a=sendrecv")
    plan = audio_plan.from_answer(offered, answer)
    assert plan is not None
    assert plan.codec is PCMU and plan.send_payload_type == 0
    assert plan.remote == ("10.0.0.9", 4000)
    assert set(plan.receive) == {0} and plan.receive[0].decoder == "pcm_mulaw"
    assert plan.events == {101} and plan.send_events == 101 and plan.sends


def test_g722_is_decoded_at_16_khz_and_a_renumbered_opus_is_taken_on_both_numbers() -> None:
    offered = audio_plan.offer_formats(["g722", "opus"])
    g722 = audio_plan.from_answer(offered, description("9"))
    assert g722 is not None and g722.codec is G722
    assert g722.receive[9].sample_rate == 16_000
    opus = audio_plan.from_answer(offered, description("96", "a=rtpmap:96 opus/48000/2"))
    assert opus is not None and opus.codec is OPUS
    assert opus.send_payload_type == 96 and set(opus.receive) == {96, 111}


def test_no_common_codec_a_refused_stream_or_srtp_makes_no_plan() -> None:
    offered = audio_plan.offer_formats(["pcmu"])
    assert audio_plan.from_answer(offered, description("3")) is None  # GSM
    assert audio_plan.from_answer(offered, description("0", port=0)) is None
    # SRTP, which peercam does not speak to phones: refused rather than sent in the clear.
    assert audio_plan.from_answer(offered, description("0", profile="RTP/SAVP")) is None
    held = audio_plan.from_answer(offered, description("0", "a=inactive"))
    assert held is not None and not held.sends  # a call on hold: kept, nothing sent


def test_a_phones_offer_is_answered_with_its_first_codec_peercam_makes() -> None:
    offer = description(
        "8 9 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=sendonly"
    )
    made = audio_plan.from_offer(offer, ["g722", "pcmu", "pcma"])
    assert made is not None
    plan, answer = made
    assert plan.codec is PCMA  # the phone's order is its preference (RFC 3264 §6.1)
    assert [(f.payload_type, f.name) for f in answer] == [(8, "PCMA"), (101, "TELEPHONE-EVENT")]
    assert not plan.sends  # it only sends: peercam listens
    assert audio_plan.from_offer(description("3"), ["pcmu"]) is None


def test_video_is_sent_only_in_the_h264_packets_peercam_makes() -> None:
    answer = description(
        "0", "m=video 5000 RTP/AVP 97 98", "a=rtpmap:97 H264/90000",
        "a=fmtp:97 profile-level-id=42e01f;packetization-mode=0", "a=rtpmap:98 H264/90000",
        "a=fmtp:98 profile-level-id=42e01f;packetization-mode=1",
    )  # fmt: skip
    body = sdp.describe("10.0.0.2", 20000, [sdp.Format(0, "PCMU", 8000)], 1, 1)
    assert sdp.parse_video(body) is None  # no video offered, none found
    video = sdp.parse_video(
        b"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0\r\n"
        b"m=video 5000 RTP/AVP 97 98\r\na=rtpmap:97 H264/90000\r\n"
        b"a=fmtp:97 packetization-mode=0\r\na=rtpmap:98 H264/90000\r\n"
        b"a=fmtp:98 profile-level-id=42e01f;packetization-mode=1\r\n"
    )
    plan = video_plan.from_answer(video)
    assert plan is not None and plan.payload_type == 98 and plan.remote == ("10.0.0.9", 5000)
    high = sdp.parse_video(
        b"v=0\r\nc=IN IP4 10.0.0.9\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"
        b"a=fmtp:97 profile-level-id=640028;packetization-mode=1\r\n"
    )
    assert video_plan.from_answer(high) is None  # High profile: not what peercam sends
    assert answer.port == 4000  # the audio is read past the video lines too


def test_an_answer_has_the_offers_streams_refusing_the_others_with_port_0() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0\r\nm=video 5000 RTP/AVP 97\r\n"
        b"m=application 6000 UDP/BFCP *\r\n"
    )
    assert sdp.count_streams(offer) == [
        ("audio", "RTP/AVP 0"), ("video", "RTP/AVP 97"), ("application", "UDP/BFCP *"),
    ]  # fmt: skip
    body = sdp.describe(
        "10.0.0.2", 20000, [sdp.Format(0, "PCMU", 8000)], 1, 1,
        video=sdp.VideoSection(0, [sdp.Format(97, "", 0)]),
        refused=[("application", "UDP/BFCP *")],
    ).decode()  # fmt: skip
    assert [line for line in body.split("\r\n") if line.startswith("m=")] == [
        "m=audio 20000 RTP/AVP 0", "m=video 0 RTP/AVP 97", "m=application 0 UDP/BFCP *",
    ]  # fmt: skip


def test_a_phones_video_offer_is_answered_in_its_profile_and_srtp_refused() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0\r\n"
        b"m=video 5000 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n"
        b"a=fmtp:99 profile-level-id=42801e;packetization-mode=1\r\n"
    )
    made = video_plan.from_offer(sdp.parse_video(offer))
    assert made is not None
    plan, answer = made
    assert plan.payload_type == 99 and answer.payload_type == 99
    assert answer.fmtp == "profile-level-id=42801e;packetization-mode=1"  # RFC 6184 §8.2.2
    encrypted = offer.replace(b"m=video 5000 RTP/AVP", b"m=video 5000 RTP/SAVP")
    assert video_plan.from_offer(sdp.parse_video(encrypted)) is None


def test_an_answer_lists_its_streams_in_the_offers_order() -> None:
    body = sdp.describe(
        "10.0.0.2", 20000, [sdp.Format(0, "PCMU", 8000)], 1, 1,
        video=sdp.VideoSection(0, [sdp.Format(97, "", 0)]),
        refused=[("application", "UDP/BFCP *")], order=["video", "application", "audio"],
    ).decode()  # fmt: skip
    assert [line for line in body.split("\r\n") if line.startswith("m=")] == [
        "m=video 0 RTP/AVP 97", "m=application 0 UDP/BFCP *", "m=audio 20000 RTP/AVP 0",
    ]  # fmt: skip


def test_peercams_video_offer_names_the_level_of_the_stream_it_sends() -> None:
    assert video_plan.offer_format(640, 360, 30).fmtp == (
        "profile-level-id=42e01f;packetization-mode=1"
    )  # level 3.1: what libx264 is set to at least
    assert video_plan.offer_format(1920, 1080, 30).fmtp.startswith("profile-level-id=42e028")
