"""Opus through PyAV, 20 ms frames, one encoder for every viewer."""

from __future__ import annotations

import av

from peercam.encode.backend import EncodedChunk, EncoderBackend
from peercam.media import Captured, CapturedAudio


class OpusAudioEncoder(EncoderBackend):
    codec = "opus"

    def __init__(self, bitrate: int, sample_rate: int = 48_000) -> None:
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = sample_rate
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = bitrate
        context.options = {"application": "lowdelay", "frame_duration": "20"}
        context.open()
        self._context = context
        self._pts = 0

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        assert isinstance(captured, CapturedAudio)
        frame = captured.samples
        frame.pts = self._pts
        self._pts += frame.samples
        return [EncodedChunk(bytes(packet), True) for packet in self._context.encode(frame)]

    def close(self) -> None:
        # PyAV frees the codec with its last reference; there is no close() to call.
        del self._context
