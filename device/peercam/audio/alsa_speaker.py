"""Talkback out of the Pi's speaker: an ALSA playback device behind a jitter buffer.

Browser audio arrives in 20 ms packets with network jitter. Playback starts once
`jitter_ms` is buffered (the only latency this adds) and the buffer is capped at
`max_ms`: if it grows past that (the device's clock slower than the sender's), the
oldest audio is dropped so the delay cannot creep up during a long call. An underrun
plays silence and buffers afresh. The device is written from a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import av

from peercam.audio.alsa_microphone import AlsaSettings, open_pcm
from peercam.capture.driver_thread import DriverThread

logger = logging.getLogger(__name__)


class AlsaSpeaker(DriverThread[Any]):
    def __init__(
        self,
        settings: AlsaSettings,
        jitter_ms: int = 40,
        max_ms: int = 120,
        backoff: tuple[float, float] = (1.0, 10.0),
    ) -> None:
        super().__init__(backoff)
        self.settings = settings
        self.label = f"speaker {settings.device}"
        self._bytes_per_ms = settings.rate * settings.channels * 2 // 1000
        self._target = jitter_ms * self._bytes_per_ms
        self._limit = max_ms * self._bytes_per_ms
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._resampler: Any = None

    def start(self) -> None:
        if self.running:
            return
        layout = "mono" if self.settings.channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=self.settings.rate)
        with self._lock:
            self._buffer.clear()
        self._start_thread()

    async def stop(self) -> None:
        await self._stop_thread()

    def play(self, frame: av.AudioFrame) -> None:
        """Queue decoded audio (any rate and layout); called on the event loop."""
        if not self.running or self._resampler is None:
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
        self._play(pcm)

    def _play(self, pcm: Any) -> None:
        s = self.settings
        period_bytes = s.rate * s.period_ms // 1000 * s.channels * 2
        buffering = True
        deadline = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                if buffering and len(self._buffer) >= self._target:
                    buffering = False
                if not buffering and len(self._buffer) >= period_bytes:
                    chunk = bytes(self._buffer[:period_bytes])
                    del self._buffer[:period_bytes]
                else:
                    chunk = bytes(period_bytes)  # silence: an underrun, or still filling
                    buffering = True
            pcm.write(chunk)
            # A real device blocks in write(); one that does not (alsa-lib's file
            # plugin) is paced here so that the buffer drains at the device's rate.
            deadline += s.period_ms / 1000
            ahead = deadline - time.monotonic()
            if ahead > 0:
                self._stopping.wait(ahead)
            elif ahead < -0.5:
                deadline = time.monotonic()
