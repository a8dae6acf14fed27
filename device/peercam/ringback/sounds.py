"""The ring-back's sound files, read once at start into the speaker's own format.

Any file FFmpeg reads will do (WAV, FLAC, Ogg, MP3): PyAV decodes and resamples it to
S16_LE at the speaker's rate and channels, so the speaker thread only copies bytes.
The defaults ship in this package; scripts/make-ringback-sounds.py made them.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import av
import numpy as np

DEFAULT_TONE = "ringback.wav"
DEFAULT_UNANSWERED = "unanswered.wav"


class SoundError(Exception):
    """A sound file that cannot be played, phrased for the user."""


def load_sound(path: str, default: str, rate: int, channels: int, volume: float) -> bytes:
    """`path` ("" for the shipped `default`) as S16_LE PCM, scaled by `volume`."""
    try:
        if path:
            pcm = _decode(path, rate, channels)
        else:
            with resources.files(__package__).joinpath(default).open("rb") as file:
                pcm = _decode(file, rate, channels)
    except (OSError, av.FFmpegError, IndexError) as error:
        # IndexError: a file with no audio stream (a picture, say).
        raise SoundError(f"cannot play {path or default}: {error or 'no audio in it'}") from None
    if not pcm:
        raise SoundError(f"{path or default} holds no sound")
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) * volume
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def _decode(source: Any, rate: int, channels: int) -> bytes:
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    parts: list[bytes] = []
    with av.open(source) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            parts.extend(out.to_ndarray().tobytes() for out in resampler.resample(frame))
        parts.extend(out.to_ndarray().tobytes() for out in resampler.resample(None))
    return b"".join(parts)
