"""A room made of real alsa-lib PCMs on FIFOs, for the daemon's echo tests.

The daemon's speaker is alsa-lib's `file` plugin writing into one FIFO; its
microphone is the same plugin reading another (the PCMs of tests/alsa_fixture.py).
A thread here plays the room: every 20 ms it takes what the speaker wrote, passes
it through an impulse response (tests/room.py) with a clock drift, scales it, adds
the visitor's voice and a little noise, and writes that to the microphone's FIFO.
The microphone's FIFO holds what a card's capture buffer would (200 ms, for a
reader that is late); the daemon reads it as soon as it is written. It records what
it wrote, with the time, for the measurements.

The speaker side plays as a card does: from a buffer that starts once it holds a
period more than it plays (ALSA's start threshold), one period per tick, and starts
afresh the same way after running dry. Without that lead, each tick played whatever
the speaker had written since the last one, so a write landing a millisecond after a
tick instead of before it (thread jitter, nothing a card would notice) moved all that
followed by a whole period — the echo's delay flipping between two values, which the
canceller must find again each time (the ERLE dips of clean-clone runs under load)."""

from __future__ import annotations

import fcntl
import os
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.alsa_fixture import ASOUNDRC
from tests.room import Signal

RATE = 48_000
BLOCK = RATE // 50  # 20 ms
START_AT = 2 * BLOCK  # what the speaker's buffer holds before it plays
# What the microphone's card buffers for a reader that is late; the room's own thread
# running late (the test process is busy) writes what it owes at once, as a card's
# clock never stops: dropping it instead made the captured sound skip, which no card
# does, and moved the echo's delay by what was skipped.
MIC_BUFFER = 10 * BLOCK


@dataclass
class Written:
    at: float  # time.monotonic() when written to the microphone
    echo: Signal
    visitor: Signal


@dataclass
class EchoRoom:
    directory: Path
    response: Signal
    gain: float = 0.5
    drift: float = 1e-4  # the microphone's clock this much slower than the speaker's
    visitor: Signal = field(default_factory=lambda: np.zeros(0))
    visitor_from: float = 0.0  # seconds after start
    written: list[Written] = field(default_factory=list)
    trimmed: int = 0  # speaker samples the room dropped, arriving faster than played
    reads: list[int] = field(default_factory=list)  # samples per read of the speaker
    underruns: int = 0  # times the speaker's buffer ran dry while it played
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.directory)}

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mic_path = self.directory / "mic.fifo"
        self.speaker_path = self.directory / "speaker.fifo"
        for path in (self.mic_path, self.speaker_path):
            os.mkfifo(path)
        (self.directory / ".asoundrc").write_text(
            ASOUNDRC.format(mic=self.mic_path, speaker=self.speaker_path)
        )
        # Read end of the speaker's FIFO, and both ends of the microphone's, open before
        # alsa-lib opens either: its opens then never wait for us.
        self._speaker = os.open(self.speaker_path, os.O_RDONLY | os.O_NONBLOCK)
        self._mic = os.open(self.mic_path, os.O_RDWR | os.O_NONBLOCK)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="echo-room", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        os.close(self._speaker)
        os.close(self._mic)

    def _queued(self) -> int:
        buffer = bytearray(4)
        fcntl.ioctl(self._mic, termios.FIONREAD, buffer)
        return int.from_bytes(buffer, "little")

    def _run(self) -> None:
        far = np.zeros(0)
        tail = np.zeros(len(self.response) - 1)
        fft_size = 1 << int(np.ceil(np.log2(BLOCK + len(self.response))))
        response = np.fft.rfft(self.response, fft_size)
        next_tick = time.monotonic()
        skip_every = int(1 / self.drift) if self.drift else 0
        produced = 0
        visitor_at = int(self.visitor_from * RATE)
        noise = np.random.default_rng(5)
        playing = False
        while not self._stop.is_set():
            try:
                data = os.read(self._speaker, 1 << 16)
            except BlockingIOError:
                data = b""
            if data:
                usable = len(data) // 2 * 2
                far = np.concatenate((far, np.frombuffer(data[:usable], "<i2") / 32768))
            # What the speaker wrote in a burst plays on, as a card's buffer would;
            # only past 200 ms (the speaker's clock far ahead) the oldest goes.
            if len(far) > 10 * BLOCK:
                self.trimmed += len(far) - 10 * BLOCK
                far = far[-10 * BLOCK :]
            if data:
                self.reads.append(len(data) // 2)
            if not playing and len(far) >= START_AT:
                playing = True
            if playing:
                block, far = far[:BLOCK], far[BLOCK:]
                if len(block) < BLOCK:  # ran dry: silence, then a fresh start
                    playing = False
                    self.underruns += 1
            else:
                block = np.zeros(0)
            block = np.concatenate((block, np.zeros(BLOCK - len(block))))
            heard = np.fft.irfft(np.fft.rfft(block, fft_size) * response, fft_size)
            heard = heard[: BLOCK + len(tail)]
            heard[: len(tail)] += tail
            echo, tail = heard[:BLOCK] * self.gain, heard[BLOCK:].copy()
            if skip_every:
                # The microphone's slower clock: one sample in `skip_every` never
                # reaches it.
                keep = [i for i in range(BLOCK) if (produced + i) % skip_every]
                echo = echo[keep]
            produced += BLOCK
            start = produced - BLOCK - visitor_at
            visitor = np.zeros(len(echo))
            if 0 <= start + len(echo) and start < len(self.visitor):
                part = self.visitor[max(0, start) : start + len(echo)]
                offset = max(0, -start)
                visitor[offset : offset + len(part)] = part[: len(echo) - offset]
            mic = echo + visitor + 3e-4 * noise.standard_normal(len(echo))
            pcm = np.clip(np.round(mic * 32767), -32768, 32767).astype("<i2").tobytes()
            if self._queued() < MIC_BUFFER * 2:  # bytes
                try:
                    os.write(self._mic, pcm)
                    self.written.append(Written(time.monotonic(), echo, visitor))
                except BlockingIOError:
                    pass
            next_tick += BLOCK / RATE
            self._stop.wait(max(0.0, next_tick - time.monotonic()))
