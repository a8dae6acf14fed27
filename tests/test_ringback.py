"""What the visitor hears, through real alsa-lib: its `file` plugin is the speaker
(`file:FILE=...`, defined by alsa-lib's own alsa.conf), so every sample the daemon
plays lands in a raw file we read back. The daemon runs in process, so the test can
answer at a known point of the played sound: the speaker's count of frames handed to
the device when the answer happens on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.config import build_config
from peercam.doorbell.call import Doorbell
from peercam.ringback.ringback import MESSAGE_SLACK
from peercam.ringback.sounds import DEFAULT_TONE, DEFAULT_UNANSWERED, load_sound
from tests.alsa_fixture import dominant_frequency
from tests.inprocess_daemon import InProcessDaemon

pytestmark = pytest.mark.timeout(120)

RATE = 16_000
PERIOD = RATE * 20 // 1000  # the speaker writes 20 ms at a time
TONE_HZ, MESSAGE_HZ = 1000.0, 2500.0
MESSAGE_SECONDS = 0.6
T = TypeVar("T")


def write_wav(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return path


def file_pcm(path: Path) -> str:
    return f"file:FILE={path},FORMAT=raw"


def ringback_daemon(tmp_path: Path, device: str, ring_timeout: float) -> InProcessDaemon:
    # Whole cycles of 1 kHz at 16 kHz (16 samples each): the tone loops without a seam.
    tone = write_wav(tmp_path / "tone.wav", TONE_HZ, 0.5)
    message = write_wav(tmp_path / "message.wav", MESSAGE_HZ, MESSAGE_SECONDS)
    return InProcessDaemon(
        build_config(
            {
                "server": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "redirect_http": False,
                    "state_dir": str(tmp_path / "state"),
                },
                "camera": {"source": "test", "size": "320x240", "fps": 15},
                "audio": {"source": "test"},
                "talkback": {"device": device, "rate": RATE},
                "doorbell": {"ring_timeout": ring_timeout},
                "ringback": {"tone_file": str(tone), "unanswered_file": str(message)},
            }
        )
    )


def on_loop(daemon: InProcessDaemon, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on the daemon's event loop and wait for its result."""
    loop = daemon._loop
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(make(), loop).result(10)


def parts(daemon: InProcessDaemon) -> tuple[Doorbell, AlsaSpeaker]:
    assert daemon.daemon is not None
    doorbell = daemon.daemon.parts.doorbell
    speaker = doorbell.talkback.speaker
    assert speaker is not None
    return doorbell, speaker


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def played(path: Path) -> npt.NDArray[np.int16]:
    return np.frombuffer(path.read_bytes(), dtype="<i2")


def sound_of(samples: npt.NDArray[np.int16]) -> str:
    """One 20 ms period: "tone", "message" or "silence"."""
    if np.sqrt(np.mean(samples.astype(np.float64) ** 2)) < 100:
        return "silence"
    hz = dominant_frequency(samples, RATE)
    if abs(hz - TONE_HZ) < 60:
        return "tone"
    if abs(hz - MESSAGE_HZ) < 60:
        return "message"
    return f"{hz:.0f} Hz"


def runs(samples: npt.NDArray[np.int16]) -> list[tuple[str, int]]:
    """The played sound as (what, how many periods) in order."""
    out: list[tuple[str, int]] = []
    for start in range(0, len(samples) - PERIOD + 1, PERIOD):
        kind = sound_of(samples[start : start + PERIOD])
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + 1)
        else:
            out.append((kind, 1))
    return out


def last_tone_sample(samples: npt.NDArray[np.int16]) -> int:
    """Index just past the tone's last sample: the speaker writes exact zeros after it."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 50)
    return int(loud[-1]) + 1 if len(loud) else 0


def test_unanswered_ring_plays_the_tone_then_the_message(tmp_path: Path) -> None:
    speaker_file = tmp_path / "speaker.raw"
    ring_timeout = 1.5
    with ringback_daemon(tmp_path, file_pcm(speaker_file), ring_timeout) as daemon:
        doorbell, speaker = parts(daemon)
        daemon.call(lambda: doorbell.ring("test"))
        wait_until(lambda: speaker.running)
        # Rings out, says its message, then lets the device go.
        wait_until(lambda: doorbell.state.value == "idle" and speaker.closed)
    sequence = runs(played(speaker_file))
    kinds = [kind for kind, _ in sequence]
    # In order: the tone from the first period, the message, then silence at most.
    assert kinds[:2] == ["tone", "message"], sequence
    assert set(kinds[2:]) <= {"silence"}, sequence
    tone_seconds = sequence[0][1] * PERIOD / RATE
    message_seconds = sequence[1][1] * PERIOD / RATE
    # The tone lasts the ring (less the moment the device took to open), looping its
    # 0.5 s file; the whole message is heard, cut nowhere.
    assert ring_timeout - 0.3 < tone_seconds < ring_timeout + 0.1, sequence
    assert abs(message_seconds - MESSAGE_SECONDS) <= 0.04, sequence


def test_the_tone_stops_within_100_ms_of_an_answer_or_a_decline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    speaker_file = tmp_path / "speaker.raw"
    with ringback_daemon(tmp_path, file_pcm(speaker_file), ring_timeout=30) as daemon:
        doorbell, speaker = parts(daemon)

        def ring_until_heard() -> None:
            daemon.call(lambda: doorbell.ring("test"))
            # Well into the tone, so that its end is the answer's doing.
            wait_until(lambda: speaker.running and speaker.frames_written > RATE // 2)

        ring_until_heard()

        async def answer() -> int:
            mark = speaker.frames_written  # where in the played sound the answer is
            outcome = await doorbell.answer("viewer-session", "admin")
            assert outcome.ok, outcome
            return mark

        answered_at = on_loop(daemon, answer)
        # The call goes on with no talker audio: the speaker plays silence meanwhile.
        wait_until(lambda: speaker.frames_written > answered_at + RATE // 2)
        on_loop(daemon, lambda: doorbell.hang_up("viewer-session", "admin"))
        wait_until(lambda: speaker.closed)
        after_answer = played(speaker_file)

        ring_until_heard()  # the device opens afresh, and the file starts again

        async def decline() -> int:
            mark = speaker.frames_written
            outcome = await doorbell.decline("viewer-session", "admin")
            assert outcome.ok, outcome
            return mark

        declined_at = on_loop(daemon, decline)
        wait_until(lambda: speaker.closed)
        after_decline = played(speaker_file)

    for what, samples, mark in (
        ("answer", after_answer, answered_at),
        ("decline", after_decline, declined_at),
    ):
        # The tone was sounding right up to the moment of the answer...
        assert sound_of(samples[mark - PERIOD : mark]) == "tone", what
        # ...and its last sample is within 100 ms of it.
        delay_ms = (last_tone_sample(samples) - mark) * 1000 / RATE
        with capsys.disabled():
            print(f"\nring-back tone stopped {delay_ms:.1f} ms after the {what}")
        assert delay_ms <= 100, (what, delay_ms)
    assert len(after_answer) >= answered_at + RATE // 2  # the call's silence was played


def test_a_missing_speaker_is_let_go_after_a_missed_ring(tmp_path: Path) -> None:
    # No such PCM: the speaker retries opening it while it rings and while the message
    # would play, then stops trying instead of retrying for good.
    with ringback_daemon(tmp_path, "no_such_pcm", ring_timeout=0.5) as daemon:
        doorbell, speaker = parts(daemon)
        daemon.call(lambda: doorbell.ring("test"))
        wait_until(lambda: speaker.running)
        wait_until(lambda: doorbell.state.value == "idle")
        wait_until(lambda: speaker.closed, timeout=MESSAGE_SECONDS + MESSAGE_SLACK + 2)


def test_the_shipped_sounds_load_at_any_speaker_rate() -> None:
    for rate in (16_000, 48_000):
        tone = np.frombuffer(load_sound("", DEFAULT_TONE, rate, 1, 1.0), dtype="<i2")
        message = np.frombuffer(load_sound("", DEFAULT_UNANSWERED, rate, 1, 1.0), dtype="<i2")
        # The ring-back cadence: 1 s of 440 + 480 Hz, then 2 s of silence.
        assert abs(len(tone) / rate - 3.0) < 0.01
        assert 430 < dominant_frequency(tone[: rate // 2], rate) < 490
        assert not tone[int(1.1 * rate) :].any()
        # The message is seconds of sound, not silence.
        assert 2.0 < len(message) / rate < 10.0
        assert np.sqrt(np.mean(message.astype(np.float64) ** 2)) > 500
    # volume scales what is played
    full = np.frombuffer(load_sound("", DEFAULT_TONE, RATE, 1, 1.0), dtype="<i2")
    half = np.frombuffer(load_sound("", DEFAULT_TONE, RATE, 1, 0.5), dtype="<i2")
    assert np.max(np.abs(half)) == pytest.approx(np.max(np.abs(full)) / 2, abs=1)
