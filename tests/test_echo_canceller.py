"""The echo canceller (echo/) with the real WebRTC module, in a simulated room
(tests/room.py): the speaker's periods go to SpeakerReference as the speaker's
thread hands them over, the microphone's 20 ms periods through EchoCanceller as its
thread would, in the same order. The daemon-level room, through alsa-lib, is in
tests/test_echo_room.py."""

from __future__ import annotations

import numpy as np

from peercam.echo.canceller import EchoCanceller, probe
from peercam.echo.reference import SpeakerReference
from tests.room import (
    VIEWER_TEXT,
    Signal,
    echo_of,
    impulse_response,
    level_db,
    speech,
)

NS = True
RATE = 48_000
PERIOD = RATE // 50  # 20 ms, the speaker's and the microphone's


def to_pcm(signal: Signal) -> np.ndarray:
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def run(played: Signal, mic: Signal) -> Signal:
    """The canceller's output for `mic`, with `played` as what the speaker played."""
    reference = SpeakerReference(RATE)
    canceller = EchoCanceller(reference, channels=1, noise_suppression=NS)
    speaker, captured = to_pcm(played), to_pcm(mic)
    out = []
    for start in range(0, len(captured) - PERIOD + 1, PERIOD):
        reference.played(speaker[start : start + PERIOD].tobytes(), RATE, 1)
        out.append(canceller.process(captured[start : start + PERIOD]))
    return np.concatenate(out).astype(np.float64) / 32768


def test_echo_alone_is_cancelled_by_30_db_after_two_seconds() -> None:
    viewer = speech(VIEWER_TEXT, "en-us")
    played = np.concatenate([viewer, viewer])[: 12 * RATE] * 0.5
    echo = echo_of(played, impulse_response(RATE, 40), gain=0.5, drift=1e-4)
    out = run(played, echo + 1e-4 * np.random.default_rng(2).standard_normal(len(echo)))
    after = slice(2 * RATE, len(out))
    erle = level_db(echo[after]) - level_db(out[after])
    assert erle >= 30, erle


def test_a_jump_in_the_echos_delay_is_cancelled_again_within_a_second() -> None:
    """The echo path changes mid-call (10 ms later): one second on, the echo is down
    by 30 dB again."""
    viewer = speech(VIEWER_TEXT, "en-us")
    played = np.concatenate([viewer, viewer, viewer])[: 16 * RATE] * 0.5
    jump = 8 * RATE
    before = echo_of(played, impulse_response(RATE, 40), gain=0.5, drift=1e-4)
    after = echo_of(played, impulse_response(RATE, 50), gain=0.5, drift=1e-4)
    echo = np.concatenate([before[:jump], after[jump:]])
    out = run(played, echo + 1e-4 * np.random.default_rng(3).standard_normal(len(echo)))
    settled = slice(jump + RATE, len(out))
    erle = level_db(echo[settled]) - level_db(out[settled])
    assert erle >= 30, erle
    # Worst 250 ms after that second: no burst of echo left behind.
    window = RATE // 4
    worst = min(
        level_db(echo[s : s + window]) - level_db(out[s : s + window])
        for s in range(jump + RATE, len(out) - window, window)
        if level_db(echo[s : s + window]) > -50  # speech, not a pause
    )
    assert worst >= 20, worst


def test_the_reference_keeps_step_with_the_microphone_through_drift() -> None:
    """A speaker whose clock runs 1 % fast hands over more than the microphone takes:
    what waits is trimmed to the slack, never more, and gaps read as silence."""
    reference = SpeakerReference(RATE, slack_ms=40)
    period = np.ones(PERIOD, dtype=np.int16).tobytes()
    extra = np.ones(PERIOD // 100, dtype=np.int16).tobytes()
    for _ in range(500):  # 10 s
        reference.played(period + extra, RATE, 1)
        assert len(reference.take(PERIOD // 2)) == PERIOD // 2
        assert len(reference.take(PERIOD // 2)) == PERIOD // 2
    assert 0 < reference.dropped <= 500 * (PERIOD // 100)
    ahead = reference.take(RATE // 10)
    assert np.count_nonzero(ahead) <= RATE * 40 // 1000  # at most the slack waited
    assert not np.any(reference.take(RATE // 100))  # nothing played since: silence


def test_a_speaker_at_another_rate_and_in_stereo_is_converted() -> None:
    reference = SpeakerReference(16_000)
    t = np.arange(48_000 // 50) / 48_000
    tone = (8000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    for _ in range(10):
        reference.played(np.repeat(tone, 2).tobytes(), 48_000, 2)
    taken = reference.take(16_000 // 50 * 2).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(taken))
    assert abs(np.fft.rfftfreq(len(taken), 1 / 16_000)[int(np.argmax(spectrum))] - 500) < 30


def test_check_says_when_the_canceller_cannot_run() -> None:
    """22.05 kHz has no whole 10 ms frames: `peercam check` says so plainly."""
    works, detail = probe(22_050, 1)
    assert not works and "22050 Hz has no whole 10 ms frames" in detail
    works, detail = probe(16_000, 2)
    assert works and "WebRTC AEC3" in detail
