"""The echo canceller (echo/) with the real WebRTC module, in a simulated room
(tests/room.py): the speaker's periods go to SpeakerReference as the speaker's
thread hands them over, the microphone's 20 ms periods through EchoCanceller as its
thread would, in the same order. The daemon-level room, through alsa-lib, is in
tests/test_echo_room.py."""

from __future__ import annotations

import numpy as np
import pytest

from peercam.echo.canceller import MAX_READ_DELAY, EchoCanceller, probe
from peercam.echo.clock_rate import ClockRate
from peercam.echo.reference import DRIFT_DEAD_BAND, Samples, SpeakerReference
from tests.room import (
    VIEWER_TEXT,
    VISITOR_TEXT,
    cancel,
    comb_levels,
    echo_of,
    impulse_response,
    level_db,
    on_comb,
    speech,
)

RATE = 48_000
PERIOD = RATE // 50  # 20 ms, the speaker's and the microphone's


def test_echo_alone_is_cancelled_by_30_db_after_two_seconds() -> None:
    viewer = speech(VIEWER_TEXT, "en-us")
    played = np.concatenate([viewer, viewer])[: 12 * RATE] * 0.5
    echo = echo_of(played, impulse_response(RATE, 40), gain=0.5, drift=1e-4)
    out = cancel(
        played, echo + 1e-4 * np.random.default_rng(2).standard_normal(len(echo)), drift=1e-4
    )
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
    out = cancel(
        played, echo + 1e-4 * np.random.default_rng(3).standard_normal(len(echo)), drift=1e-4
    )
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


def test_the_visitor_talking_over_the_echo_is_kept_and_the_echo_still_taken_out() -> None:
    """Double talk 30 s into a call, the echo 8 dB under the visitor at the
    microphone (the loudest of the bench's three), the two cards 100 ppm apart and
    both threads late now and then: the visitor comes out within 3 dB of how the
    canceller passes them with no echo at all, and 20 dB over the echo left in. The
    speaker's sound and the visitor's lie on interleaved combs of narrow bands, so
    what is on the speaker's comb in the output is the echo left in."""
    played = on_comb(np.tile(speech(VIEWER_TEXT, "en-us"), 4)[: 40 * RATE] * 0.5, speaker=True)
    visitor = speech(VISITOR_TEXT, "en-gb+f3") * 0.5
    near = np.zeros(len(played))
    near[30 * RATE : 30 * RATE + len(visitor)] = visitor[: 10 * RATE]
    near = on_comb(near, speaker=False)
    talk = slice(30 * RATE + RATE // 2, min(len(played), 30 * RATE + len(visitor)))
    path = echo_of(played, impulse_response(RATE, 40), gain=1.0, drift=1e-4)
    echo = path * np.sqrt(np.mean(near[talk] ** 2) / np.mean(path[talk] ** 2) / 10 ** (8 / 10))
    out = cancel(played, echo + near, drift=1e-4, late_ms=5)
    alone = cancel(np.zeros(len(played)), near, drift=1e-4, late_ms=5)
    echo_left, visitor_out = comb_levels(out[talk])
    assert comb_levels(echo[talk])[0] - echo_left >= 10  # some echo is taken out at all
    assert visitor_out - echo_left >= 20, visitor_out - echo_left
    assert abs(visitor_out - comb_levels(alone[talk])[1]) <= 3


def test_the_reference_keeps_to_the_echo_sample_for_sample_when_the_cards_drift() -> None:
    """The microphone 100 ppm slow against the speaker: once both clocks are measured
    the reference is converted at their ratio, so the echo's lag behind it stops
    moving (counting samples alone, it slides 4.8 samples a second)."""
    taken: list[Samples] = []

    class Recording(SpeakerReference):
        def take(self, count: int, start: float) -> Samples:
            samples = super().take(count, start)
            taken.append(samples)
            return samples

    noise = np.random.default_rng(5).standard_normal(60 * RATE) * 0.05
    echo = echo_of(noise, np.ones(1), gain=1.0, drift=1e-4)
    run = cancel(noise, echo * 0.1, drift=1e-4, late_ms=5, reference_type=Recording)
    assert len(run) == len(noise)
    reference = np.concatenate(taken).astype(np.float64)

    def lag_at(second: int) -> int:
        at, span, most = second * RATE, RATE // 10, 400
        seen = reference[at : at + span]
        heard = echo[at - most : at + span + most] * 32768
        return int(np.argmax([np.dot(seen, heard[k : k + span]) for k in range(2 * most)])) - most

    lags = [lag_at(second) for second in range(30, 60, 5)]
    assert max(lags) - min(lags) <= 1, lags


@pytest.mark.parametrize(
    ("microphone", "speaker", "follows"),
    [(-1e-4, 0.0, True), (5e-6, 0.0, False), (8e-6, -8e-6, True), (3e-5, 3e-5, False)],
    ids=["100 ppm apart", "5 ppm: load, not a crystal", "16 ppm apart", "one card for both"],
)
def test_the_clocks_ratio_is_followed_only_when_the_cards_are_apart(
    microphone: float, speaker: float, follows: bool
) -> None:
    """Two clocks measured and at least DRIFT_DEAD_BAND apart: converted at their
    ratio from then on. Closer (or one card for both, however far off the system's
    clock), nothing changes. A speaker that cannot say what it holds is not measured,
    so nothing is converted on half the picture."""
    reference = SpeakerReference(RATE)
    mic = ClockRate(RATE)
    mic.known, mic.error = True, microphone
    reference.capture_clock = mic
    reference.played(np.zeros(PERIOD, np.int16).tobytes(), RATE, 1, 0.0, 0)
    assert reference._speaker_clock is not None
    reference._speaker_clock.known, reference._speaker_clock.error = True, speaker
    for index in range(1, 5):
        reference.played(np.zeros(PERIOD, np.int16).tobytes(), RATE, 1, index * 0.02, 0)
    assert reference.following_clocks == follows
    assert abs(DRIFT_DEAD_BAND - 10e-6) < 1e-12
    unmeasured = SpeakerReference(RATE)
    unmeasured.capture_clock = mic
    for index in range(3000):  # a minute of a card that cannot say what it holds
        unmeasured.played(np.zeros(PERIOD, np.int16).tobytes(), RATE, 1, index * 0.02)
    assert unmeasured._speaker_clock is not None and not unmeasured._speaker_clock.known
    assert not unmeasured.following_clocks


@pytest.mark.parametrize("speed", [0.99, 1.01], ids=["slow card", "fast card"])
def test_the_reference_is_the_sound_of_the_frame_asked_for(speed: float) -> None:
    """A card 1 % slow (or fast), written in jittering periods and read by a
    microphone whose reads jitter too: the reference of each frame is what played
    when the frame began (within the timing noise, never further behind), continuous
    but for a few jumps forward, with silence where the slow card ran dry."""
    slow = speed
    reference = SpeakerReference(RATE)
    jitter = np.random.default_rng(4).uniform(-0.003, 0.003, 2000)
    written, previous, jumps = 0, -1, 0
    for index in range(500):  # 10 s of the card's 20 ms periods
        count = round((index + 1) * PERIOD * slow) - written
        # Each sample says where it is (modulo 30000): when it plays, at the card's rate.
        ramp = np.arange(written, written + count) % 30_000
        reference.played(ramp.astype(np.int16).tobytes(), RATE, 1, index * 0.02 + jitter[index])
        written += count
        for half in range(2):
            began = index * 0.02 + half * 0.01 + abs(jitter[1000 + 2 * index + half])
            taken = reference.take(PERIOD // 2, began)
            if not np.any(taken[:1]):
                continue  # the card ran dry here: silence first
            position = int(taken[0])
            position += round((began * RATE * slow - position) / 30_000) * 30_000
            plays_at = position / (RATE * slow)
            # Behind by at most the tolerance (10 ms) and the writes' jitter (3 ms).
            assert began - 0.0135 <= plays_at <= began + 0.025, (index, plays_at, began)
            if position != previous + 1:
                assert position > previous  # forward only
                jumps += 1
            # The frame may end where the card ran dry (silence follows).
            follows = (int(taken[0]) + np.arange(len(taken))) % 30_000
            run = len(taken) if np.all(taken == follows) else int(np.argmax(taken != follows))
            previous = position + run - 1
    assert jumps <= 20 and reference.resynced <= 20, (jumps, reference.resynced)
    if speed > 1:  # followed in steps, not left to fall behind
        assert 5 <= reference.retimed <= 25 and reference.resynced == 0, reference.retimed
    assert not np.any(reference.take(PERIOD, 11.0))  # nothing written since: silence


def test_a_card_filling_its_buffer_at_the_start_is_not_taken_for_a_fast_one() -> None:
    """A card takes its first periods at once (its buffer fills), then one a period:
    the lead of the writes grows by whole periods in a moment, as no card's clock
    runs. Nothing is retimed, and each frame's reference stays the sound playing then
    (taken for a fast clock, the reference jumped 20 ms ahead of the echo)."""
    reference = SpeakerReference(RATE)
    for index in range(150):  # 3 s
        written_at = 0.0 if index < 3 else (index - 2) * 0.02
        ramp = np.arange(index * PERIOD, (index + 1) * PERIOD) % 30_000
        reference.played(ramp.astype(np.int16).tobytes(), RATE, 1, written_at)
        for half in range(2):
            began = (index - 2) * 0.02 + half * 0.01
            if began < 0:
                continue
            taken = reference.take(PERIOD // 2, began)
            # The card started playing at 0: sample n plays at n / RATE.
            assert int(taken[0]) == round(began * RATE) % 30_000, (index, half, int(taken[0]))
    assert reference.retimed == 0 and reference.resynced == 0


class _TakesRecorded(SpeakerReference):
    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        self.starts: list[float] = []

    def take(self, count: int, start: float) -> Samples:
        self.starts.append(round(start, 6))
        return super().take(count, start)


def test_a_capture_read_late_keeps_its_time_and_one_after_lost_samples_does_not() -> None:
    """The microphone's thread late by 80 ms (its samples waited in the card's buffer):
    the capture is still timed where it follows the one before. After an overrun
    (samples lost) or a read later than any buffer holds, it is timed by the read."""
    reference = _TakesRecorded(RATE)
    canceller = EchoCanceller(reference, channels=1)
    period = np.zeros(PERIOD, np.int16)
    canceller.process(period, 0.02, True)  # the first capture: [0, 20 ms)
    canceller.process(period, 0.04 + 0.08, False)  # read 80 ms late
    canceller.process(period, 0.5, True)  # after an overrun
    canceller.process(period, 0.5 + 0.02 + MAX_READ_DELAY + 0.1, False)  # samples lost
    assert reference.starts == [0.0, 0.01, 0.02, 0.03, 0.48, 0.49, 1.1, 1.11]


def test_a_microphone_whose_clock_runs_slow_stays_timed_within_a_few_ms() -> None:
    """A card 100 ppm slow, read by a thread late now and then: over 20 minutes the
    capture clock keeps within a few ms of when the samples really came in (counting
    samples alone falls behind by 6 ms a minute). The clock alone, without the
    module: 60 000 periods."""
    canceller = EchoCanceller(SpeakerReference(RATE), channels=1)
    busy = np.random.default_rng(7).uniform(0, 1, 60_000)
    worst = 0.0
    for index in range(60_000):  # 20 minutes of 20 ms periods
        complete = (index + 1) * 0.02 * 1.0001  # when the slow card has the period
        late = 0.03 * busy[index] if busy[index] > 0.9 else 0.0005 * busy[index]
        timed = canceller._capture_clock(complete + late, PERIOD, index == 0)
        worst = max(worst, abs(timed - complete))
    assert worst < 0.005, worst


def test_a_speaker_at_another_rate_and_in_stereo_is_converted() -> None:
    reference = SpeakerReference(16_000)
    t = np.arange(48_000 // 50) / 48_000
    tone = (8000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    for index in range(10):
        reference.played(np.repeat(tone, 2).tobytes(), 48_000, 2, index * 0.02)
    taken = reference.take(16_000 // 50 * 2, 0.1).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(taken))
    assert abs(np.fft.rfftfreq(len(taken), 1 / 16_000)[int(np.argmax(spectrum))] - 500) < 30


def test_check_says_when_the_canceller_cannot_run() -> None:
    """22.05 kHz has no whole 10 ms frames: `peercam check` says so plainly."""
    works, detail = probe(22_050, 1)
    assert not works and "22050 Hz has no whole 10 ms frames" in detail
    works, detail = probe(16_000, 2)
    assert works and "WebRTC AEC3" in detail
