"""The codec table (encode/codecs.py) against the real FFmpeg in PyAV, and the
packetizers it names against real encoded frames."""

from __future__ import annotations

import fractions
import itertools

import av
import numpy as np
import pytest

from peercam.encode.codecs import BY_NAME, H264, VP8
from peercam.encode.packetize import WholeFramePacketizer

MTU_PAYLOAD = 1300  # aiortc's payloaders keep each payload under this


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_codec_names_an_encoder_and_decoder_ffmpeg_has(name: str) -> None:
    spec = BY_NAME[name]
    assert spec.encoder in av.codecs_available and spec.decoder in av.codecs_available
    assert av.Codec(spec.encoder, "w").type == spec.kind
    assert spec.mime_type.lower().startswith(f"{spec.kind}/")
    assert spec.has_keyframes == (spec.kind == "video")


def encoded_frames(codec: str, count: int = 3) -> list[bytes]:
    context = av.CodecContext.create(BY_NAME[codec].encoder, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = 640, 480, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    noise = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    packets: list[bytes] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(noise, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in context.encode(frame)]
    packets += [bytes(p) for p in context.encode(None)]
    return packets


def test_h264_frames_become_payloads_under_the_mtu_starting_with_the_parameter_sets() -> None:
    packetizer = H264.packetizer()
    first = encoded_frames("h264")[0]
    payloads = packetizer.payloads(first)
    assert len(payloads) > 1 and all(len(p) <= MTU_PAYLOAD for p in payloads)
    # STAP-A (24) carrying the SPS first, or the SPS alone.
    assert payloads[0][0] & 0x1F in (24, 7)


def test_vp8_payloads_mark_the_start_of_each_frame_and_count_picture_ids() -> None:
    packetizer = VP8.packetizer()
    frames = encoded_frames("vp8")
    picture_ids = []
    for data in frames:
        payloads = packetizer.payloads(data)
        assert all(len(p) <= MTU_PAYLOAD for p in payloads)
        assert payloads[0][0] & 0x10  # S: start of a partition
        assert not any(p[0] & 0x10 for p in payloads[1:])
        picture_ids.append(int.from_bytes(payloads[0][2:4], "big") & 0x7FFF)
    assert all(b == (a + 1) % (1 << 15) for a, b in itertools.pairwise(picture_ids))


def test_audio_frames_are_one_payload_each() -> None:
    for name in ("opus", "pcmu", "pcma"):
        packetizer = BY_NAME[name].packetizer()
        assert isinstance(packetizer, WholeFramePacketizer)
        assert packetizer.payloads(b"\x01\x02\x03") == (b"\x01\x02\x03",)
