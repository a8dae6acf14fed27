"""The echo canceller in a simulated room (tests/room.py), with the real WebRTC
module and peercam's reference and canceller: how far it takes the echo down, how
fast it follows a change in the echo's path, what it does to the visitor's voice
while both talk, and what it costs. Prints figures; asserts nothing (the tests do).

- Echo only: espeak-ng speech from the speaker, through a 40 ms, 300 ms-decay
  impulse response at half level, 100 ppm clock drift; ERLE after 2 s.
- A jump: the echo's delay grows by 10 ms at 8 s; how long until every 250 ms
  window of speech after it is down by 30 dB again.
- Double talk: the visitor speaks 30 s into a call while the speaker plays, at
  three levels of echo (the visitor 20, 14 and 8 dB above it at the microphone: a
  speaker turned down, and nearer), the microphone's clock 100 ppm slow against the
  speaker's and both threads late now and then (up to 5 ms). The speaker's sound and
  the visitor's are put on interleaved combs of narrow bands (ITU-T P.502's idea),
  and each run is made twice, the visitor's sign flipped the second time: the sum of
  the two outputs holds the echo left in, their difference the visitor (the
  Hagerman-Olofsson method), and each is read on its own comb only, so neither the
  visitor's distortion by the suppressor nor what the two runs treat differently
  counts as echo. The visitor is compared with the same speech through the canceller
  with no echo at all. Also given: the sign flip alone on full-band speech, which
  counts whatever of the visitor the suppressor treats differently in the two runs as
  echo: an upper bound on the echo left in.
- CPU: process time per second of audio at 16 and 48 kHz.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tests.room import (
    VIEWER_TEXT,
    VISITOR_TEXT,
    Signal,
    cancel,
    comb_levels,
    echo_of,
    impulse_response,
    level_db,
    on_comb,
    speech,
)

RATE = 48_000
WINDOW = RATE // 4


# How far the visitor is above the echo at the microphone in the double-talk runs.
DOUBLE_TALK_SER_DB = (20, 14, 8)


@dataclass(frozen=True)
class DoubleTalk:
    split: str  # how the visitor and the echo left in were told apart
    visitor_over_echo_in_db: float  # at the microphone
    visitor_kept_db: float  # against the echo-free run (0 is untouched)
    visitor_over_echo_out_db: float  # the visitor over the residual echo


@dataclass(frozen=True)
class EchoFigures:
    erle_db: float  # echo only, after 2 s
    reconverged_s: float | None  # after a 10 ms jump; None: not within the run
    double_talk: list[DoubleTalk]
    cpu_per_second: dict[int, float]  # rate -> CPU seconds per second of audio


def _speech_loop(seconds: int, rate: int = RATE) -> Signal:
    voice = speech(VIEWER_TEXT, "en-us", rate)
    return np.tile(voice, seconds * rate // len(voice) + 1)[: seconds * rate] * 0.5


def _erle(echo: Signal, out: Signal) -> float:
    return level_db(echo) - level_db(out)


def measure() -> EchoFigures:
    played = _speech_loop(16)
    echo = echo_of(played, impulse_response(RATE, 40), 0.5, 1e-4)
    out = cancel(played, echo, drift=1e-4)
    erle = _erle(echo[2 * RATE :], out[2 * RATE :])

    jump = 8 * RATE
    later = echo_of(played, impulse_response(RATE, 50), 0.5, 1e-4)
    moved = np.concatenate([echo[:jump], later[jump:]])
    out_moved = cancel(played, moved, drift=1e-4)
    reconverged = None
    for start in range(jump, len(out_moved) - WINDOW, WINDOW):
        windows = range(start, len(out_moved) - WINDOW, WINDOW)
        speaking = [s for s in windows if level_db(moved[s : s + WINDOW]) > -50]
        if all(_erle(moved[s : s + WINDOW], out_moved[s : s + WINDOW]) >= 30 for s in speaking):
            reconverged = (start - jump) / RATE
            break

    call = 40 * RATE
    at = 30 * RATE
    visitor = speech(VISITOR_TEXT, "en-gb+f3") * 0.5
    near = np.zeros(call)
    near[at : at + len(visitor)] = visitor[: call - at]
    talk = slice(at + RATE // 2, min(call, at + len(visitor)))
    double_talk = []
    for combed in (True, False):
        viewer = _speech_loop(40)
        played = on_comb(viewer, speaker=True) if combed else viewer
        visiting = on_comb(near, speaker=False) if combed else near
        alone = cancel(np.zeros(call), visiting, drift=1e-4, late_ms=5)
        path = echo_of(played, impulse_response(RATE, 40), 1.0, 1e-4)
        for over in DOUBLE_TALK_SER_DB:
            scale = np.sqrt(np.mean(visiting[talk] ** 2) / np.mean(path[talk] ** 2))
            echo = path * scale / 10 ** (over / 20)
            both = cancel(played, echo + visiting, drift=1e-4, late_ms=5)
            flipped = cancel(played, echo - visiting, drift=1e-4, late_ms=5)
            visitor_part, echo_part = (both - flipped)[talk] / 2, (both + flipped)[talk] / 2
            if combed:
                visitor_out = comb_levels(visitor_part)[1]
                kept = visitor_out - comb_levels(alone[talk])[1]
                over_out = visitor_out - comb_levels(echo_part)[0]
            else:
                kept = level_db(visitor_part) - level_db(alone[talk])
                over_out = level_db(visitor_part) - level_db(echo_part)
            double_talk.append(DoubleTalk("comb" if combed else "sign flip", over, kept, over_out))

    cpu = {}
    for rate in (16_000, 48_000):
        audio = _speech_loop(10, rate)
        heard = echo_of(audio, impulse_response(rate, 40), 0.5, 1e-4)
        started = time.process_time()
        cancel(audio, heard, rate)
        cpu[rate] = (time.process_time() - started) / 10
    return EchoFigures(erle, reconverged, double_talk, cpu)


def summary(figures: EchoFigures) -> list[str]:
    again = (
        "not within the run" if figures.reconverged_s is None else f"{figures.reconverged_s:.2f} s"
    )
    cpu = ", ".join(
        f"{seconds * 1000:.0f} ms at {rate // 1000} kHz"
        for rate, seconds in figures.cpu_per_second.items()
    )
    return [
        f"- echo only: ERLE {figures.erle_db:.1f} dB after 2 s (target >= 30)",
        f"- echo path 10 ms longer mid-call: back to >= 30 dB in every window after {again}"
        " (target <= 1 s)",
        "- double talk (targets: the visitor within 3 dB of no echo, >= 20 dB over the"
        " residual echo):",
        *(
            f"  - visitor {talk.visitor_over_echo_in_db:.0f} dB over the echo at the microphone"
            f" ({talk.split}): kept at {talk.visitor_kept_db:+.1f} dB,"
            f" {talk.visitor_over_echo_out_db:.1f} dB over the residual echo"
            for talk in figures.double_talk
        ),
        f"- CPU per second of audio on this machine: {cpu}",
    ]


def main() -> None:
    print("\n".join(summary(measure())))


if __name__ == "__main__":
    main()
