"""Sources, and the seam between a capture driver's thread and the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from peercam.media import CapturedEncoded, Kind

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Source(ABC, Generic[T]):
    """What the pipeline needs of a camera or microphone.

    A source hands the event loop raw captures (`T`) for the shared software encoders
    and, if it encodes by itself (`native_codec`), `CapturedEncoded` frames that pass
    straight to viewers. The pipeline says which of the two it currently needs, so a
    camera does no work for outputs nobody uses.
    """

    kind: Kind
    name: str
    native_codec: str | None = None

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self, sink: Callable[[T | CapturedEncoded], None]) -> None:
        """Begin capturing; `sink` is called on the event loop's thread."""

    @abstractmethod
    async def stop(self) -> None: ...

    def set_outputs(self, raw: bool, encoded: bool) -> None:
        """Which outputs the pipeline needs now; a source may skip work for the others."""

    def request_keyframe(self) -> bool:
        """Ask the source's own encoder for a keyframe (native sources only); whether
        the request reached an encoder that can honour it."""
        return False


class PacedSource(Source[T]):
    """A source that makes one item per interval in its own thread.

    Capture drivers block (a camera's dequeue, ALSA's read), so each runs in a thread
    of its own and hands items to the event loop, where `sink` is called. A source
    that falls behind skips ahead rather than bursting to catch up: live media has no
    use for stale frames.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: Callable[[T | CapturedEncoded], None] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, sink: Callable[[T | CapturedEncoded], None]) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._stopping.clear()
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        await asyncio.to_thread(thread.join)
        self._close()

    def _open(self) -> None:
        """Acquire the device; runs on the loop thread before capture starts."""

    def _close(self) -> None:
        """Release the device after the capture thread has ended."""

    @abstractmethod
    def _capture(self, now: float) -> T:
        """Make or read one item; runs in the capture thread."""

    def _run(self) -> None:
        assert self._loop is not None and self._sink is not None
        loop, sink = self._loop, self._sink
        deadline = time.monotonic()
        while not self._stopping.is_set():
            try:
                item = self._capture(time.monotonic())
            except Exception:
                logger.exception("%s capture failed; stopping it", self.name)
                return
            try:
                loop.call_soon_threadsafe(sink, item)
            except RuntimeError:  # the loop closed under us during shutdown
                return
            deadline += self.interval
            delay = deadline - time.monotonic()
            if delay < -self.interval:
                deadline = time.monotonic()  # fell behind: skip, do not burst
            elif delay > 0:
                self._stopping.wait(delay)
