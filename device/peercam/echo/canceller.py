"""Echo cancellation on the microphone's path: WebRTC's audio processing module
(AEC3, noise suppression, high-pass filter, optional automatic gain) through the
`livekit` package's binding, in the microphone's own thread, in 10 ms frames.

Chosen by measurement in a simulated room (issue 22's note has the numbers):
WebRTC's AEC3 kept cancelling through the two devices' clock drift and a jump in
the echo's delay, where speex-based cancellers never settled; of the AEC3 bindings
with wheels for the Pi's aarch64 and x86-64, livekit's cancelled most and cost
least. It is imported only when echo cancellation is on.
"""

from __future__ import annotations

import importlib
import logging
import math
from typing import Any

import numpy as np

from peercam.audio.alsa_microphone import AlsaMicrophone
from peercam.config import TalkbackConfig
from peercam.echo.clock_rate import ClockRate
from peercam.echo.reference import Samples, SpeakerReference

logger = logging.getLogger(__name__)

# Longer than any card buffers captured sound for a late reader: a capture read
# later than this after the one before lost samples, even if no overrun was reported.
MAX_READ_DELAY = 0.5
# How often the capture clock looks for a card running slow, and the drift it takes up.
DRIFT_WINDOW_S = 1.0
DRIFT_STEP_S = 0.002
# The rates WebRTC's module takes whole 10 ms frames of.
FRAME_RATES = (8000, 16000, 32000, 44100, 48000)


class EchoUnavailable(Exception):
    """The canceller cannot run here (its package, or the microphone's rate)."""


def load_binding() -> Any:
    """livekit.rtc, or EchoUnavailable saying why not."""
    try:
        return importlib.import_module("livekit.rtc")
    except ImportError as error:
        raise EchoUnavailable(f"the livekit package is missing ({error})") from None


class EchoCanceller:
    def __init__(
        self,
        reference: SpeakerReference,
        channels: int,
        noise_suppression: bool = True,
        auto_gain: bool = False,
    ) -> None:
        rate = reference.rate
        if rate not in FRAME_RATES:
            raise EchoUnavailable(
                f"the microphone's rate {rate} Hz has no whole 10 ms frames; use "
                + ", ".join(str(r) for r in FRAME_RATES)
            )
        self._rtc = load_binding()
        self.reference = reference
        self.rate = rate
        self.channels = channels
        self._frame = rate // 100  # samples per channel in 10 ms
        self._options = {
            "echo_cancellation": True,
            "noise_suppression": noise_suppression,
            "high_pass_filter": True,
            "auto_gain_control": auto_gain,
        }
        self._module: Any = None
        self._last_end = 0.0  # the capture clock: when the last sample came in
        self._clock_rate = ClockRate(rate)
        reference.capture_clock = self._clock_rate
        self._least_late = math.inf  # the least a read was late in this window
        self._window_ends = 0.0
        # Captured samples short of a whole frame, processed with the next capture.
        self._carry: Samples = np.zeros(0, dtype=np.int16)

    def _capture_clock(self, captured_at: float, count: int, after_gap: bool) -> float:
        """When the capture's last sample really came in. A read returns when the
        card has the samples or later (the thread was busy, and they waited in the
        card's buffer), never sooner; the samples themselves come at the card's
        steady rate. So the capture follows the one before — however late it was
        read — unless samples were lost in between (the first capture, an overrun),
        or it returns sooner than that (the clock was late), or so much later that
        no card could have kept it (samples lost unreported)."""
        clock = self._clock_rate
        if after_gap or captured_at - self._last_end > MAX_READ_DELAY + count / self.rate:
            clock.restart()  # samples were lost: the count starts over
        clock.add(count, captured_at)
        follows = self._last_end + count / (self.rate * (1 + clock.error))
        late = captured_at - follows
        if after_gap or late < 0 or late > MAX_READ_DELAY:
            follows = captured_at
            self._least_late, self._window_ends = math.inf, captured_at + DRIFT_WINDOW_S
        else:
            # A card whose clock runs slow delivers later than its samples count:
            # every read is then late by at least that much, however prompt the
            # thread. The least lateness over a window is that drift (a busy
            # thread's lateness comes and goes); past DRIFT_STEP_S it is taken up.
            self._least_late = min(self._least_late, late)
            if captured_at >= self._window_ends:
                if self._least_late > DRIFT_STEP_S:
                    follows += self._least_late
                self._least_late, self._window_ends = math.inf, captured_at + DRIFT_WINDOW_S
        self._last_end = follows
        return follows

    def process(self, samples: Samples, captured_at: float, after_gap: bool = False) -> Samples:
        """Interleaved S16 as captured, its last sample at `captured_at`
        (time.monotonic()), `after_gap` if samples were lost before it; returns as
        many whole 10 ms frames as the capture and the carried remainder make (with
        the microphone's 20 ms periods, all of it: no latency is added). Called from
        the microphone's thread only."""
        if self._module is None:
            self._module = self._rtc.AudioProcessingModule(**self._options)
        data = np.concatenate((self._carry, samples)) if len(self._carry) else samples
        step = self._frame * self.channels
        whole = len(data) // step * step
        self._carry = data[whole:].copy()
        first_at = (
            self._capture_clock(captured_at, len(samples) // self.channels, after_gap)
            - len(data) // self.channels / self.rate
        )
        out = np.empty(whole, dtype=np.int16)
        for start in range(0, whole, step):
            began = first_at + start // self.channels / self.rate
            far = self.reference.take(self._frame, began)
            self._module.process_reverse_stream(
                self._rtc.AudioFrame(far.tobytes(), self.rate, 1, self._frame)
            )
            frame = self._rtc.AudioFrame(
                bytearray(data[start : start + step].tobytes()), self.rate, self.channels,
                self._frame,
            )  # fmt: skip
            self._module.process_stream(frame)  # in place
            out[start : start + step] = np.frombuffer(frame.data, dtype=np.int16)
        return out


def build_echo_canceller(settings: TalkbackConfig, microphone: object) -> EchoCanceller | None:
    """The canceller `talkback.echo_cancellation` asks for, if it can run: an ALSA
    microphone to clean (the test tone has no room to echo in) and the module."""
    if not settings.echo_cancellation:
        return None
    if not isinstance(microphone, AlsaMicrophone):
        logger.info("echo cancellation: no ALSA microphone, nothing to cancel")
        return None
    mic = microphone.settings
    try:
        canceller = EchoCanceller(
            SpeakerReference(mic.rate), mic.channels, settings.noise_suppression, settings.auto_gain
        )
    except EchoUnavailable as error:
        logger.warning("echo cancellation is off: %s (talkback.half_duplex is the fallback)", error)
        return None
    logger.info(
        "echo cancellation on: WebRTC AEC3 at %d Hz, noise suppression %s, automatic gain %s",
        mic.rate,
        "on" if settings.noise_suppression else "off",
        "on" if settings.auto_gain else "off",
    )
    return canceller


def probe(rate: int, channels: int) -> tuple[bool, str]:
    """Whether the canceller runs here at the microphone's rate: it cleans a frame."""
    try:
        canceller = EchoCanceller(SpeakerReference(rate), channels)
        canceller.process(np.zeros(rate // 100 * channels, dtype=np.int16), 0.0)
    except EchoUnavailable as error:
        return False, str(error)
    except Exception as error:  # the binding's own failure, in its own words
        return False, f"the canceller failed: {error}"
    version = getattr(canceller._rtc, "__version__", "?")
    return True, f"WebRTC AEC3 (livekit {version}) at {rate} Hz"
