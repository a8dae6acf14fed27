"""Talkback out of the Pi's speaker: an ALSA playback device behind a jitter buffer.

Browser audio arrives in 20 ms packets with network jitter. Playback starts once
`jitter_ms` is buffered (the only latency this adds) and the buffer is capped at
`max_ms`: if it grows past that (the device's clock slower than the sender's), the
oldest audio is dropped so the delay cannot creep up during a long call. An underrun
plays silence and buffers afresh. The device is written from a thread of its own.

The doorbell's ring-back tone and messages ("cues", ringback/) go out of the same
device object, never a second open of it: a sound card opened twice fails on a Pi,
and two writers would fight. Talk always wins. The moment a talker starts (an answer
starts talkback before anything else hears of it), the next period written is the
talker's (or silence while the jitter buffer fills), so a cue stops within one period
of the answer. The thread runs while someone talks or a cue plays, whichever ends last.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from peercam.audio.alsa_microphone import AlsaSettings, open_pcm
from peercam.capture.driver_thread import DriverThread

logger = logging.getLogger(__name__)

# How many periods the speaker is written ahead of the clock (a small card's buffer).
BUFFER_PERIODS = 2


@dataclass
class _Cue:
    pcm: bytes  # S16_LE at the device's rate and channels
    repeat: bool
    finished: asyncio.Future[None]
    position: int = 0

    def take(self, size: int) -> tuple[bytes, bool]:
        """The next `size` bytes (silence past the end), and whether it has ended."""
        if self.repeat and self.pcm:
            out = bytearray()
            while len(out) < size:
                part = self.pcm[self.position : self.position + size - len(out)]
                out += part
                self.position = (self.position + len(part)) % len(self.pcm)
            return bytes(out), False
        part = self.pcm[self.position : self.position + size]
        self.position += len(part)
        return part + bytes(size - len(part)), self.position >= len(self.pcm)

    def finish(self) -> None:
        # The future belongs to the event loop; from the driver thread it is resolved
        # there. A loop already closed (shutdown) has nobody left waiting.
        def resolve() -> None:
            if not self.finished.done():
                self.finished.set_result(None)

        try:
            self.finished.get_loop().call_soon_threadsafe(resolve)
        except RuntimeError:
            pass


class AlsaSpeaker(DriverThread[Any]):
    def __init__(
        self,
        settings: AlsaSettings,
        jitter_ms: int = 40,
        max_ms: int = 120,
        backoff: tuple[float, float] = (1.0, 10.0),
        on_played: Callable[[bytes, int, int, float, int | None], None] | None = None,
    ) -> None:
        """`on_played(pcm, rate, channels, written_at, queued)`: told of every period
        as it is written (time.monotonic()), with how many frames the card then held
        unplayed (None if it cannot say), in the speaker's thread: the echo
        canceller's reference."""
        super().__init__(backoff)
        self.settings = settings
        self._on_played = on_played
        self.label = f"speaker {settings.device}"
        self._bytes_per_ms = settings.rate * settings.channels * 2 // 1000
        self._target = jitter_ms * self._bytes_per_ms
        self._limit = max_ms * self._bytes_per_ms
        self._buffer = bytearray()
        self._buffering = True
        self._lock = threading.Lock()
        self._resampler: Any = None
        self._talking = False
        self._cue: _Cue | None = None
        # Frames (samples per channel) handed to the device since it was last opened:
        # where in the played sound something happened (the tests measure how soon a
        # cue stops after an answer with it).
        self.frames_written = 0
        # The close under way, if any: a device is opened again only once it is shut
        # (a sound card refuses a second open; the file plugin would truncate a file
        # still being flushed).
        self._closing: asyncio.Future[bool] | None = None

    @property
    def closed(self) -> bool:
        """Nothing plays and the device is shut: no thread, no close under way."""
        return not self.running and (self._closing is None or self._closing.done())

    def start(self) -> None:
        """A talker begins: their audio replaces any cue from the next period on."""
        if self._talking:
            return
        layout = "mono" if self.settings.channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=self.settings.rate)
        with self._lock:
            self._buffer.clear()
            self._buffering = True
            self._talking = True
        self._ensure_running()

    async def stop(self) -> None:
        """The talker is done; a cue still playing goes on."""
        with self._lock:
            self._talking = False
            self._buffer.clear()
        await self._release_if_idle()

    def cue(self, pcm: bytes, repeat: bool) -> asyncio.Future[None]:
        """Play `pcm` (S16_LE at the device's rate and channels) whenever nobody talks,
        in a loop if `repeat`, replacing any cue before it. The future is done once
        all of it has been handed to the device (never, when repeating) or when it
        is replaced or ended; the device stays open until `end_cue`."""
        cue = _Cue(pcm, repeat, asyncio.get_running_loop().create_future())
        with self._lock:
            previous, self._cue = self._cue, cue
        if previous is not None:
            previous.finish()
        self._ensure_running()
        return cue.finished

    async def end_cue(self) -> None:
        """Silence the cue at once and close the device unless someone talks."""
        with self._lock:
            cue, self._cue = self._cue, None
        if cue is not None:
            cue.finish()
        await self._release_if_idle()

    def _ensure_running(self) -> None:
        if self.running:
            return
        closing = self._closing
        if closing is not None and not closing.done():
            closing.add_done_callback(lambda _: self._start_if_needed())
            return
        # Counted afresh from now, not once the thread has opened the device: someone
        # who sees `running` must not read the last opening's count.
        self.frames_written = 0
        self._start_thread()

    def _start_if_needed(self) -> None:
        with self._lock:
            needed = self._talking or self._cue is not None
        if needed and not self.running:
            self._ensure_running()

    async def _release_if_idle(self) -> None:
        with self._lock:
            idle = not self._talking and self._cue is None
        if not idle:
            return
        closing = self._closing
        if self.running:
            closing = asyncio.ensure_future(self._stop_thread())
            self._closing = closing
        if closing is not None and not closing.done():
            # Two releases in one turn (a cue ended, a talker done) share one close.
            await asyncio.shield(closing)

    def play(self, frame: av.AudioFrame) -> None:
        """Queue decoded audio (any rate and layout); called on the event loop."""
        if not self._talking or self._resampler is None:
            return
        frame.pts = None  # each talker's timestamps are its own; the buffer keeps time
        data = b"".join(out.to_ndarray().tobytes() for out in self._resampler.resample(frame))
        with self._lock:
            self._buffer += data
            excess = len(self._buffer) - self._limit
            if excess > 0:
                excess += -excess % (2 * self.settings.channels)  # whole samples only
                del self._buffer[:excess]

    def _open(self) -> Any:
        return open_pcm(self.settings, capture=False)

    def _close(self, pcm: Any) -> None:
        pcm.close()

    def _use(self, pcm: Any) -> None:
        logger.info("%s playing at %d Hz", self.label, self.settings.rate)
        self.frames_written = 0
        self._play(pcm)

    def _play(self, pcm: Any) -> None:
        s = self.settings
        frame_bytes = s.channels * 2
        period_bytes = s.rate * s.period_ms // 1000 * frame_bytes
        buffer_size = _buffer_size(pcm)
        deadline = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                chunk = self._next_period(period_bytes)
            pcm.write(chunk)
            self.frames_written += len(chunk) // frame_bytes
            if self._on_played is not None:
                # Stamped once written: a card plays it no sooner. What it still holds
                # says how far its own clock has played, which the writes (paced by
                # the system's clock below) cannot.
                now = time.monotonic()
                self._on_played(chunk, s.rate, s.channels, now, _queued(pcm, buffer_size))
            # Every device is written up to BUFFER_PERIODS ahead of this clock and no
            # further: a card whose buffer holds more is never filled, so its write()
            # does not block either (a card whose clock runs fast drains that cushion
            # and underruns now and then: not yet handled). A device that never blocks
            # (alsa-lib's file plugin) is paced by it, and the cushion means a thread
            # waking a little late never leaves it without sound (which the echo
            # canceller's reference takes for the card running dry).
            deadline += s.period_ms / 1000
            ahead = deadline - time.monotonic()
            lead = BUFFER_PERIODS * s.period_ms / 1000
            if ahead > lead:
                self._stopping.wait(ahead - lead)
            elif ahead < -0.5:
                deadline = time.monotonic()

    def _next_period(self, period_bytes: int) -> bytes:
        """What to write next: the talker's audio, else the cue, else silence. Called
        with the lock held."""
        if self._talking:
            if self._buffering and len(self._buffer) >= self._target:
                self._buffering = False
            if not self._buffering and len(self._buffer) >= period_bytes:
                chunk = bytes(self._buffer[:period_bytes])
                del self._buffer[:period_bytes]
                return chunk
            self._buffering = True
            return bytes(period_bytes)  # silence: an underrun, or still filling
        cue = self._cue
        if cue is None:
            return bytes(period_bytes)
        chunk, ended = cue.take(period_bytes)
        if ended:
            self._cue = None
            cue.finish()
        return chunk


def _buffer_size(pcm: Any) -> int | None:
    """The card's buffer in frames, as negotiated (pyalsaaudio >= 0.10's info())."""
    try:
        size = pcm.info().get("buffer_size")
    except (AttributeError, OSError, TypeError):
        return None
    return size if isinstance(size, int) and size > 0 else None


def _queued(pcm: Any, buffer_size: int | None) -> int | None:
    """Frames written but not yet played: the buffer less what snd_pcm_avail() says
    is free (it reads the card's hardware pointer). None if the card cannot say."""
    if buffer_size is None:
        return None
    try:
        free = pcm.avail()
    except (AttributeError, OSError):
        return None
    if not isinstance(free, int) or free < 0:  # an error code (an xrun): no reading
        return None
    return max(0, buffer_size - free)
