"""The burned-in capture time survives encoding and decoding in both codecs."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

from peercam.capture import timecode
from peercam.capture.test_pattern import TestPatternCamera
from peercam.encode.video import PyAVVideoEncoder, VideoSettings


def test_burn_and_read_round_trip() -> None:
    luma = np.full((480, 640), 128, dtype=np.uint8)
    for millis in (0, 1, 1_795_000_000_123, (1 << timecode.DATA_BITS) - 1):
        timecode.burn(luma, millis)
        assert timecode.read(luma) == millis


def test_read_refuses_a_picture_without_the_code() -> None:
    assert timecode.read(np.full((480, 640), 128, dtype=np.uint8)) is None


@pytest.mark.parametrize(("codec", "decoder"), [("h264", "h264"), ("vp8", "vp8")])
def test_code_survives_the_codec(codec: str, decoder: str) -> None:
    camera = TestPatternCamera(640, 480, 30)
    encoder = PyAVVideoEncoder(codec, VideoSettings(640, 480, 30, 800_000, 1.0))
    decode = av.CodecContext.create(decoder, "r")
    assert isinstance(decode, av.VideoCodecContext)
    before = int(time.time() * 1000)
    read = []
    for _ in range(20):
        for chunk in encoder.encode(camera._capture(time.monotonic()), False):
            for picture in decode.decode(av.Packet(chunk.data)):
                read.append(timecode.read(picture.to_ndarray(format="gray").astype(np.uint8)))
    after = int(time.time() * 1000)
    assert len(read) >= 15
    assert all(value is not None and before <= value <= after for value in read), read


def test_pattern_moves() -> None:
    camera = TestPatternCamera(320, 240, 30)
    first = camera._capture(0.0).image.to_ndarray()
    second = camera._capture(0.0).image.to_ndarray()
    assert first.shape == (360, 320)
    assert np.count_nonzero(first[timecode.ROWS :] != second[timecode.ROWS :]) > 1000
