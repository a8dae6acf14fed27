"""Audio encoders through PyAV: Opus for browsers, G.711 (PCMU/PCMA), G.722 and AAC
for the rest.

Microphones deliver whatever rate, layout and period their driver gives; each encoder
resamples to what its codec needs and cuts exact 20 ms frames from a FIFO, so one
capture feeds every codec.
"""

from __future__ import annotations

import av

from peercam.encode.backend import EncodedChunk, EncoderBackend
from peercam.encode.codecs import AAC, BY_NAME, OPUS
from peercam.media import Captured, CapturedAudio

FRAME_SECONDS = 0.02


class _FramedAudioEncoder(EncoderBackend):
    def __init__(
        self,
        codec_name: str,
        rate: int,
        bitrate: int | None,
        options: dict[str, str],
        sample_format: str = "s16",
        clock_rate: int | None = None,
    ):
        context = av.CodecContext.create(codec_name, "w")
        assert isinstance(context, av.AudioCodecContext)
        context.sample_rate = rate
        context.layout = "mono"
        context.format = sample_format
        if bitrate:
            context.bit_rate = bitrate
        context.options = options
        context.open()
        self._context = context
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        self._fifo = av.AudioFifo()
        # 20 ms where the codec lets us choose; AAC's frames are 1024 samples.
        self._samples = context.frame_size or round(rate * FRAME_SECONDS)
        self._pts = 0
        # Durations go out in the RTP clock's units, which may count slower (G.722).
        self._clock_per_sample = (clock_rate or rate) / rate

    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]:
        assert isinstance(captured, CapturedAudio)
        frame = captured.samples
        frame.pts = None  # the FIFO keeps time; the capture's own pts would jump
        for converted in self._resampler.resample(frame):
            self._fifo.write(converted)
        chunks = []
        while self._fifo.samples >= self._samples:
            piece = self._fifo.read(self._samples)
            assert piece is not None
            piece.pts = self._pts
            self._pts += self._samples
            chunks += [
                EncodedChunk(
                    bytes(p), True, round((p.duration or self._samples) * self._clock_per_sample)
                )
                for p in self._context.encode(piece)
            ]
        return chunks

    def close(self) -> None:
        # PyAV frees the codec with its last reference; there is no close() to call.
        del self._context


class OpusAudioEncoder(_FramedAudioEncoder):
    codec = "opus"

    def __init__(self, bitrate: int) -> None:
        super().__init__(OPUS.encoder, OPUS.clock_rate, bitrate, {"application": "lowdelay"})


class AacAudioEncoder(_FramedAudioEncoder):
    """AAC-LC through FFmpeg's own encoder (codecs.py says who needs it)."""

    codec = "aac"

    def __init__(self, bitrate: int) -> None:
        super().__init__(AAC.encoder, AAC.clock_rate, bitrate, {}, sample_format="fltp")


class TelephonyAudioEncoder(_FramedAudioEncoder):
    """PCMU or PCMA at 8 kHz for clients (SIP phones and bridges, NVRs) that offer
    nothing else, and G.722 at 16 kHz for phones that offer it."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        spec = BY_NAME[codec]
        super().__init__(spec.encoder, spec.audio_rate, None, {}, clock_rate=spec.clock_rate)
