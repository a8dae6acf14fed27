"""A simulated room for the echo tests: what the speaker plays reaches the
microphone through a synthetic impulse response (a direct path after a delay, then
reflections decaying over a few hundred milliseconds), scaled, on a clock that
drifts from the speaker's; the visitor's speech is added on top. Speech comes from
espeak-ng (Debian), so the signals are real speech, not tones."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any

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
    played: Signal,
    mic: Signal,
    rate: int = 48_000,
    noise_suppression: bool = True,
    drift: float = 0.0,
    late_ms: float = 0.0,
    seed: int = 0,
    reference_type: type[SpeakerReference] = SpeakerReference,
) -> Signal:
    """The canceller's output for `mic`, `played` being what the speaker played: each
    20 ms period handed to the reference as the speaker's thread does when it writes
    it, then the microphone's period through the canceller as its thread does when
    its last sample is in, on a clock of their own: `drift` slower than the
    speaker's (as `echo_of` has it). Either thread is late by up to `late_ms` now and
    then (exponentially distributed, mean a tenth of it), as a busy board's are."""
    period = rate // 50
    reference = reference_type(rate)
    canceller = EchoCanceller(reference, channels=1, noise_suppression=noise_suppression)
    speaker, captured = to_pcm(played), to_pcm(mic)
    late = np.minimum(
        np.random.default_rng(seed).exponential(late_ms / 10_000, (len(captured) // period, 2)),
        late_ms / 1000,
    )
    out = []
    written = 0  # the speaker's periods handed over so far
    for index, start in enumerate(range(0, len(captured) - period + 1, period)):
        complete = (start + period) * (1 + drift) / rate
        # Everything the speaker played up to this capture's end, as it was written.
        while written * period < len(speaker) and written * period / rate <= complete:
            at = written * period
            written_at = at / rate + late[min(written, len(late) - 1), 0]
            # The speaker plays what it is given when it is given it: nothing held.
            reference.played(speaker[at : at + period].tobytes(), rate, 1, written_at, 0)
            written += 1
        out.append(canceller.process(captured[start : start + period], complete + late[index, 1]))
    return np.concatenate(out).astype(np.float64) / 32768


# The double-talk split: the speaker's sound on one comb of narrow bands, the
# visitor's on the comb between (ITU-T P.502's idea), so whatever of the output lies
# on the speaker's comb is echo left in and the rest is the visitor.
COMB_SPACING_HZ = 50.0
COMB_HALF_WIDTH_HZ = 6.0


def _comb_mask(frequencies: npt.NDArray[np.floating[Any]], offset: float) -> npt.NDArray[np.bool_]:
    half = COMB_SPACING_HZ / 2
    distance = np.abs((frequencies - offset + half) % COMB_SPACING_HZ - half)
    in_band = (frequencies > 100) & (frequencies < 7_800)
    mask: npt.NDArray[np.bool_] = (distance < COMB_HALF_WIDTH_HZ) & in_band
    return mask


def on_comb(signal: Signal, speaker: bool, rate: int = 48_000) -> Signal:
    """`signal` kept on the speaker's comb (or the visitor's), its level unchanged."""
    spectrum = np.fft.rfft(signal)
    offset = 0.0 if speaker else COMB_SPACING_HZ / 2
    keep = _comb_mask(np.fft.rfftfreq(len(signal), 1 / rate), offset)
    spectrum[~keep] = 0
    combed: Signal = np.fft.irfft(spectrum, len(signal))
    scaled: Signal = combed * np.sqrt(np.mean(signal**2) / (np.mean(combed**2) + 1e-30))
    return scaled


def comb_levels(signal: Signal, rate: int = 48_000) -> tuple[float, float]:
    """The level (dB) of `signal` on the speaker's comb and on the visitor's, from
    long Hann-windowed spectra (3 Hz bins) so that neither leaks into the other."""
    size = 16_384
    window = np.hanning(size)
    power = np.zeros(size // 2 + 1)
    for start in range(0, len(signal) - size + 1, size // 2):
        power += np.abs(np.fft.rfft(signal[start : start + size] * window)) ** 2
    frequencies = np.fft.rfftfreq(size, 1 / rate)
    return (
        float(10 * np.log10(power[_comb_mask(frequencies, 0.0)].sum() + 1e-30)),
        float(10 * np.log10(power[_comb_mask(frequencies, COMB_SPACING_HZ / 2)].sum() + 1e-30)),
    )
