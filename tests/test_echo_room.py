"""Echo cancellation in the running daemon, in a room of real alsa-lib PCMs
(tests/echo_room.py): the speaker plays speech (the doorbell's ring-back, which goes
out through the same speaker and reference as a viewer's voice), the room carries it
back to the microphone after 40 ms with 300 ms of reverberation and 100 ppm of
clock drift, and a WebRTC viewer receives what the microphone sends."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import StartDaemon
from tests.echo_room import RATE, EchoRoom
from tests.room import VIEWER_TEXT, Signal, impulse_response, level_db, speech
from tests.whep_viewer import WhepViewer

pytestmark = pytest.mark.timeout(120)

CONFIG = """
[camera]
source = "test"
size = "320x240"
fps = 15
[audio]
source = "alsa"
device = "peercam_mic"
rate = 48000
codecs = ["opus"]
[talkback]
device = "peercam_speaker"
rate = 48000
jitter_ms = 20
[doorbell]
ring_timeout = 60
[ringback]
tone_file = "{tone}"
volume = 1.0
"""


def write_wav(path: Path, signal: Signal) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((signal * 32767).astype("<i2").tobytes())
    return path


def received_level(frames: list[tuple[float, Signal]], start: float, end: float) -> float:
    inside = [samples for at, samples in frames if start <= at < end]
    assert inside, "nothing received in the window"
    return level_db(np.concatenate(inside))


def echo_level(room: EchoRoom, start: float, end: float) -> float:
    return level_db(np.concatenate([w.echo for w in room.written if start <= w.at < end]))


async def test_the_speakers_echo_is_cancelled_in_what_viewers_hear(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    voice = speech(VIEWER_TEXT, "en-us")
    tone = write_wav(tmp_path / "voice.wav", 0.5 * voice / np.max(np.abs(voice)))
    room = EchoRoom(tmp_path / "room", impulse_response(RATE, 40))
    room.start()
    try:
        daemon = start_daemon(CONFIG.format(tone=tone), env=room.env)
        frames: list[tuple[float, Signal]] = []
        async with WhepViewer(daemon.access, audio_codec="audio/opus") as viewer:

            async def listen() -> None:
                while True:
                    (frame,) = await viewer.audio_frames(1)
                    samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                    frames.append((time.monotonic(), samples.astype(np.float64) / 32768))

            listening = asyncio.create_task(listen())
            await asyncio.sleep(2)  # the microphone open, the room quiet
            await asyncio.to_thread(daemon.access.urlopen, "/api/ring", method="POST")
            rang = time.monotonic()
            await asyncio.sleep(12)
            listening.cancel()
        log = daemon.log()
    finally:
        room.stop()
    assert "echo cancellation on: WebRTC AEC3 at 48000 Hz" in log
    # After 2 s to converge, over the rest of the ring-back: the echo as it reached
    # the microphone against what the viewer got (a little later; whole seconds of
    # speech either side, so the latency does not matter to the levels).
    start, end = rang + 3, rang + 11
    echo = echo_level(room, start, end)
    heard = received_level(frames, start + 0.2, end + 0.2)
    quiet = received_level(frames, rang - 1.5, rang)  # the room before the ring
    print(f"echo at the microphone {echo:.1f} dBFS, viewer heard {heard:.1f} dBFS, "
          f"before the ring {quiet:.1f} dBFS; room dropped {room.trimmed} speaker samples, "
          f"ran dry {room.underruns} times, "
          f"reads {sorted(set(room.reads))[:10]}")  # fmt: skip
    per_second = [
        round(echo_level(room, t, t + 1) - received_level(frames, t + 0.2, t + 1.2), 1)
        for t in np.arange(rang, rang + 11)
    ]
    print("ERLE per second from the ring:", per_second)
    # Speech with its pauses, 6 dB down through the room: far above the room's noise.
    assert echo > -40, echo
    assert echo - heard >= 30, (echo, heard, quiet)
