"""A sound card made of real alsa-lib: its `file` plugin over a `null` slave.

Capture reads a raw file we write (a known tone); playback writes every sample to a
file we read back. The daemon finds both through ~/.asoundrc, so it runs with HOME
pointed here (see ../shared/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ASOUNDRC = """
pcm.peercam_mic {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic}"
    format "raw"
}}
pcm.peercam_speaker {{
    type plug
    slave.pcm {{
        type file
        slave.pcm "null"
        file "{speaker}"
        format "raw"
    }}
}}
"""


@dataclass(frozen=True)
class FakeSoundCard:
    home: Path
    mic: Path
    speaker: Path
    tone_hz: float

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home)}

    def played(self) -> npt.NDArray[np.int16]:
        if not self.speaker.exists():
            return np.zeros(0, dtype=np.int16)
        return np.frombuffer(self.speaker.read_bytes(), dtype="<i2")


def fake_sound_card(directory: Path, tone_hz: float = 1000.0, seconds: int = 90) -> FakeSoundCard:
    directory.mkdir(parents=True, exist_ok=True)
    mic, speaker = directory / "mic.raw", directory / "speaker.raw"
    # Long: the plugin repeats the last buffer past the end instead of looping.
    t = np.arange(48_000 * seconds) / 48_000
    (0.3 * 32767 * np.sin(2 * np.pi * tone_hz * t)).astype("<i2").tofile(mic)
    (directory / ".asoundrc").write_text(ASOUNDRC.format(mic=mic, speaker=speaker))
    return FakeSoundCard(directory, mic, speaker, tone_hz)


def dominant_frequency(
    samples: npt.NDArray[np.floating] | npt.NDArray[np.integer], rate: int
) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
