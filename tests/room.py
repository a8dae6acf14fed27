"""A simulated room for the echo tests: what the speaker plays reaches the
microphone through a synthetic impulse response (a direct path after a delay, then
reflections decaying over a few hundred milliseconds), scaled, on a clock that
drifts from the speaker's; the visitor's speech is added on top. Speech comes from
espeak-ng (Debian), so the signals are real speech, not tones."""

from __future__ import annotations

import io
import shutil
import subprocess

import av
import numpy as np
import numpy.typing as npt
import pytest

from peercam.echo.canceller import EchoCanceller
from peercam.echo.reference import SpeakerReference

Signal = npt.NDArray[np.float64]

VIEWER_TEXT = (
    "Hello, this is the camera's owner speaking from work. Please leave the parcel "
    "by the door, I will pick it up this evening. Thank you very much, goodbye."
)
VISITOR_TEXT = (
    "Hi, I have a delivery for number twelve. It needs a signature, can you come "
    "down, or shall I leave it with a neighbour across the street?"
)


def speech(text: str, voice: str, rate: int = 48_000) -> Signal:
    """`text` spoken by espeak-ng's `voice`, at `rate`, in [-1, 1]."""
    program = shutil.which("espeak-ng")
    if program is None:
        pytest.fail("espeak-ng is missing: `make install-test` installs it")
    wav = subprocess.run(
        [program, "-v", voice, "-s", "160", "--stdout", text],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    pieces = []
    with av.open(io.BytesIO(wav), "r") as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(pieces).astype(np.float64) / 32768


def impulse_response(rate: int, delay_ms: float, decay_ms: float = 300, seed: int = 1) -> Signal:
    """A direct path after `delay_ms`, then reflections whose level falls 60 dB over
    `decay_ms` (RT60), normalised to unit energy."""
    generator = np.random.default_rng(seed)
    start = int(rate * delay_ms / 1000)
    tail = np.arange(int(rate * decay_ms / 1000))
    reflections = generator.standard_normal(len(tail)) * 10 ** (-3 * tail / len(tail))
    response = np.zeros(start + len(tail))
    response[start] = 1.0
    response[start + int(rate * 0.004) :] += 0.4 * reflections[: len(tail) - int(rate * 0.004)]
    normalised: Signal = response / np.sqrt(np.sum(response**2))
    return normalised


def echo_of(played: Signal, response: Signal, gain: float, drift: float) -> Signal:
    """What the microphone hears of `played`: through the room, scaled by `gain`, on a
    clock `drift` faster than the speaker's (1e-4 is 100 ppm)."""
    heard = np.convolve(played, response)[: len(played)] * gain
    at = np.arange(len(heard)) * (1 + drift)
    drifted: Signal = np.interp(at, np.arange(len(heard)), heard, right=0.0)
    return drifted


def level_db(signal: Signal) -> float:
    return float(10 * np.log10(np.mean(signal**2) + 1e-20))


def to_pcm(signal: Signal) -> npt.NDArray[np.int16]:
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def cancel(
    played: Signal, mic: Signal, rate: int = 48_000, noise_suppression: bool = True
) -> Signal:
    """The canceller's output for `mic`, `played` being what the speaker played: each
    20 ms period handed to the reference as the speaker's thread does when it writes
    it, then the microphone's period through the canceller as its thread does when
    its last sample is in, on a clock of their own."""
    period = rate // 50
    reference = SpeakerReference(rate)
    canceller = EchoCanceller(reference, channels=1, noise_suppression=noise_suppression)
    speaker, captured = to_pcm(played), to_pcm(mic)
    out = []
    for start in range(0, len(captured) - period + 1, period):
        reference.played(speaker[start : start + period].tobytes(), rate, 1, start / rate)
        out.append(canceller.process(captured[start : start + period], (start + period) / rate))
    return np.concatenate(out).astype(np.float64) / 32768
