"""An ALSA capture device (pyalsaaudio) as peercam's microphone.

Reads block in a thread of its own, one period at a time, and each period goes to the
event loop, where the shared audio encoders take it from their bounded queues. A
device that blocks paces itself; one that does not (alsa-lib's file plugin, some
virtual devices) is paced here against the clock. A missing or failing device is
logged and retried with backoff; video is untouched meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from peercam.capture.source import Source
from peercam.media import CapturedAudio, CapturedEncoded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlsaSettings:
    device: str
    rate: int
    channels: int
    period_ms: int = 20


def import_alsaaudio() -> Any:
    try:
        return importlib.import_module("alsaaudio")
    except ImportError:
        return None


class AlsaMicrophone(Source[CapturedAudio]):
    kind = "audio"

    def __init__(self, settings: AlsaSettings, backoff: tuple[float, float] = (1.0, 30.0)) -> None:
        self.settings = settings
        self.name = f"alsa:{settings.device}"
        self._backoff = backoff
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: Callable[[CapturedAudio | CapturedEncoded], None] | None = None
        # Half-duplex talkback silences the microphone while the speaker plays, so
        # the visitor's own voice does not come back to the viewer as echo.
        self.muted = False
        self.layout = "mono" if settings.channels == 1 else "stereo"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, sink: Callable[[CapturedAudio | CapturedEncoded], None]) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        await asyncio.to_thread(thread.join)

    def _open(self) -> Any:
        alsaaudio = import_alsaaudio()
        if alsaaudio is None:
            raise OSError("pyalsaaudio is not installed")
        s = self.settings
        return alsaaudio.PCM(
            alsaaudio.PCM_CAPTURE,
            alsaaudio.PCM_NORMAL,
            device=s.device,
            channels=s.channels,
            rate=s.rate,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=s.rate * s.period_ms // 1000,
        )

    def _run(self) -> None:
        delay, longest = self._backoff
        while not self._stopping.is_set():
            try:
                pcm = self._open()
            except Exception as error:  # alsaaudio.ALSAAudioError, OSError
                logger.warning("microphone %s unavailable (%s); retrying in %.0f s",
                               self.settings.device, error, delay)  # fmt: skip
                self._stopping.wait(delay)
                delay = min(delay * 2, longest)
                continue
            delay = self._backoff[0]
            logger.info(
                "microphone %s capturing at %d Hz", self.settings.device, self.settings.rate
            )
            try:
                self._capture(pcm)
            except Exception as error:
                logger.warning("microphone %s failed (%s); reopening", self.settings.device, error)
                self._stopping.wait(delay)
            finally:
                pcm.close()

    def _capture(self, pcm: Any) -> None:
        assert self._loop is not None and self._sink is not None
        s = self.settings
        period = s.period_ms / 1000
        deadline = time.monotonic()
        while not self._stopping.is_set():
            length, data = pcm.read()
            captured_at = time.monotonic()
            if length < 0:  # an overrun: ALSA reports it and carries on
                logger.debug("microphone overrun")
                continue
            if length == 0:
                continue
            samples = np.frombuffer(data, dtype="<i2")[: length * s.channels]
            if self.muted:
                samples = np.zeros_like(samples)
            frame = av.AudioFrame.from_ndarray(
                samples.reshape(1, -1), format="s16", layout=self.layout
            )
            frame.sample_rate = s.rate
            try:
                self._loop.call_soon_threadsafe(self._sink, CapturedAudio(frame, captured_at))
            except RuntimeError:  # loop closed during shutdown
                return
            deadline += length / s.rate
            ahead = deadline - time.monotonic()
            if ahead > 0:
                self._stopping.wait(ahead)  # a device that did not block for us
            elif ahead < -10 * period:
                deadline = time.monotonic()
