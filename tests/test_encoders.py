"""The shared encoders' bitstreams: what any viewer joining at any keyframe needs."""

from __future__ import annotations

import time

from aiortc.codecs.h264 import H264Encoder

from peercam.capture.test_pattern import TestPatternCamera
from peercam.encode.video import PyAVVideoEncoder, VideoSettings, h264_level

SPS, PPS, IDR = 7, 8, 5


def nal_types(access_unit: bytes) -> list[int]:
    return [nal[0] & 0x1F for nal in H264Encoder._split_bitstream(access_unit)]


def test_h264_is_constrained_baseline_with_sps_pps_before_every_idr() -> None:
    camera = TestPatternCamera(640, 480, 30)
    encoder = PyAVVideoEncoder("h264", VideoSettings(640, 480, 30, 1_000_000, 1.0))
    keyframes = []
    for index in range(75):
        for chunk in encoder.encode(camera._capture(time.monotonic()), index == 40):
            types = nal_types(chunk.data)
            assert chunk.keyframe == (IDR in types)
            if chunk.keyframe:
                keyframes.append(index)
                assert types.index(SPS) < types.index(PPS) < types.index(IDR), types
                sps = next(
                    n for n in H264Encoder._split_bitstream(chunk.data) if n[0] & 0x1F == SPS
                )
                profile_idc, constraints, level_idc = sps[1], sps[2], sps[3]
                assert profile_idc == 66  # baseline...
                assert constraints & 0x40  # ...with constraint_set1: constrained baseline
                assert level_idc == 31
    # Natural IDRs every 30 frames (1 s GOP), the forced one at frame 40, and the GOP
    # counted afresh from it (no extra keyframe at 60 so soon after a forced one).
    assert keyframes == [0, 30, 40, 70]


def test_vp8_honours_a_forced_keyframe() -> None:
    camera = TestPatternCamera(320, 240, 30)
    encoder = PyAVVideoEncoder("vp8", VideoSettings(320, 240, 30, 500_000, 10.0))
    keyframes = [
        index
        for index in range(20)
        for chunk in encoder.encode(camera._capture(time.monotonic()), index == 12)
        if chunk.keyframe
    ]
    assert keyframes == [0, 12]


def test_h264_level_fits_the_stream() -> None:
    assert h264_level(VideoSettings(640, 480, 30, 1, 1)) == "31"
    assert h264_level(VideoSettings(1280, 720, 30, 1, 1)) == "31"
    assert h264_level(VideoSettings(1280, 720, 60, 1, 1)) == "32"
    assert h264_level(VideoSettings(1920, 1080, 30, 1, 1)) == "40"


def test_a_second_encoder_gets_its_own_frame_with_the_same_picture() -> None:
    import numpy as np

    from peercam.media import own_copy

    captured = TestPatternCamera(320, 240, 15)._capture(time.monotonic())
    copy = own_copy(captured)
    assert copy.image is not captured.image and copy.captured_at == captured.captured_at
    assert np.array_equal(copy.image.to_ndarray(), captured.image.to_ndarray())
    # Stamping one (as an encoder does) leaves the other alone.
    copy.image.pts = 375
    captured.image.pts = 0
    assert copy.image.pts == 375
    # Fed in turn to two encoders (as a shared frame could be, interleaved with
    # another encoder's stamps), VP8 accepts its own frames.
    vp8 = PyAVVideoEncoder("vp8", VideoSettings(320, 240, 15, 500_000, 2.0))
    h264 = PyAVVideoEncoder("h264", VideoSettings(320, 240, 15, 500_000, 2.0))
    camera = TestPatternCamera(320, 240, 15)
    for _ in range(5):
        frame = camera._capture(time.monotonic())
        h264.encode(frame, False)
        assert vp8.encode(own_copy(frame), False)


def test_a_rate_buffer_holds_keyframes_to_a_share_of_a_second() -> None:
    """The low layer's buffer (0.2 s of 500 kbit/s, 12.5 kB) bounds its keyframes; the
    same picture without it makes keyframes of about 20 kB (x264's own choice), which
    queue for a fifth of a second on a 1 Mbit/s link."""

    def keyframe_sizes(buffer_seconds: float | None) -> list[int]:
        camera = TestPatternCamera(640, 360, 30)
        settings = VideoSettings(640, 360, 30, 500_000, 1.0, buffer_seconds)
        encoder = PyAVVideoEncoder("h264", settings)
        return [
            len(chunk.data)
            for _ in range(121)
            for chunk in encoder.encode(camera._capture(time.monotonic()), False)
            if chunk.keyframe
        ][1:]  # the first keyframe starts from an empty buffer

    held, unheld = keyframe_sizes(0.2), keyframe_sizes(None)
    assert len(held) == len(unheld) == 4
    assert max(held) <= 12_500, held
    assert min(unheld) > 12_500, unheld  # so the bound above is the buffer's doing


def test_the_low_layer_is_encoded_with_a_rate_buffer_and_the_nvrs_stream_without() -> None:
    from peercam.config import Config
    from peercam.pipeline import LOW_LAYER_BUFFER_SECONDS, _small_layers

    config = Config.model_validate(
        {"camera": {"size": "1280x720"}, "video": {"codecs": ["h264"]}, "rtsp": {}}
    )
    settings = {}
    for layer in _small_layers(config, TestPatternCamera(1280, 720, 30)):
        backend = layer.make_backend()
        assert isinstance(backend, PyAVVideoEncoder)
        settings[layer.layer] = backend.settings
    assert settings["low"].buffer_seconds == LOW_LAYER_BUFFER_SECONDS
    assert settings["sub"].buffer_seconds is None
