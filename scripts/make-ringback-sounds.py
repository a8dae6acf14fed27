#!/usr/bin/env python3
"""Makes the ring-back's default sounds (device/peercam/ringback/*.wav), our own:

- ringback.wav: a ring-back cadence, 440 Hz + 480 Hz together (the North American
  ring-back pair) for 1 s, then 2 s of silence; the speaker loops it while it rings.
- unanswered.wav: "Sorry, nobody can come to the door right now. Please try again
  later.", spoken by espeak-ng (Debian package espeak-ng) at the time this script runs.
  Without espeak-ng it falls back to three falling tones (a "not available" signal)
  and says so.

Both are 16 kHz mono 16-bit WAV, kept small because they ship in the package. Run
from the repository with the venv's Python (it needs numpy and PyAV):
    .venv/bin/python scripts/make-ringback-sounds.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import av
import numpy as np

RATE = 16_000
OUT = Path(__file__).resolve().parent.parent / "device" / "peercam" / "ringback"
MESSAGE = "Sorry, nobody can come to the door right now. Please try again later."


def tone(frequencies: list[float], seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    wave_ = sum(np.sin(2 * np.pi * f * t) for f in frequencies) / len(frequencies)
    # 10 ms fades: a tone switched on or off mid-cycle clicks.
    ramp = np.minimum(1.0, np.minimum(t, seconds - t) / 0.010)
    return level * wave_ * ramp


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds))


def write(name: str, signal: np.ndarray) -> None:
    pcm = np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(OUT / name), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    print(f"{OUT / name}: {len(pcm) / RATE:.2f} s")


def spoken(text: str) -> np.ndarray | None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        parts: list[np.ndarray] = []
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    speech = np.concatenate(parts).astype(np.float64) / 32768
    return speech * (0.6 / max(1e-9, float(np.max(np.abs(speech)))))


def main() -> int:
    write("ringback.wav", np.concatenate([tone([440.0, 480.0], 1.0), silence(2.0)]))
    speech = spoken(MESSAGE)
    if speech is None:
        print("espeak-ng not found: the message is three falling tones", file=sys.stderr)
        notes = [tone([f], 0.33) for f in (950.0, 1400.0, 1800.0)][::-1]
        message = np.concatenate([silence(0.3), *notes, silence(0.3)])
    else:
        message = np.concatenate([silence(0.3), speech, silence(0.3)])
    write("unanswered.wav", message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
