"""Sources, and the seam between a capture driver's thread and the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from peercam.capture.driver_thread import DriverThread
from peercam.media import CapturedEncoded, Kind

logger = logging.getLogger(__name__)

T = TypeVar("T")
H = TypeVar("H")


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
    # Whether the source can also deliver `CapturedPreview` pictures (a camera's
    # low-resolution stream), cheaper to analyse than its full-size raw frames.
    has_preview: bool = False

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self, sink: Callable[[T | CapturedEncoded], None]) -> None:
        """Begin capturing; `sink` is called on the event loop's thread."""

    @abstractmethod
    async def stop(self) -> None: ...

    def set_outputs(self, raw: bool, encoded: bool, preview: bool = False) -> None:
        """Which outputs the pipeline needs now; a source may skip work for the others."""

    def request_keyframe(self) -> bool:
        """Ask the source's own encoder for a keyframe (native sources only); whether
        the request reached an encoder that can honour it."""
        return False


class ThreadedSource(DriverThread[H], Source[T]):
    """A source whose driver runs in a DriverThread and hands captures to the loop."""

    def __init__(self, backoff: tuple[float, float] = (1.0, 30.0)) -> None:
        super().__init__(backoff)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: Callable[[T | CapturedEncoded], None] | None = None

    def start(self, sink: Callable[[T | CapturedEncoded], None]) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._start_thread()

    async def stop(self) -> None:
        await self._stop_thread()

    def _hand_over(self, item: T | CapturedEncoded) -> None:
        """From the driver's thread to `sink`, on the event loop's thread."""
        assert self._loop is not None and self._sink is not None
        self.last_item_at = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(self._sink, item)
        except RuntimeError:  # the loop closed under us during shutdown
            self._stopping.set()


class PacedSource(ThreadedSource[None, T]):
    """A source that makes one item per interval.

    A source that falls behind skips ahead rather than bursting to catch up: live
    media has no use for stale frames.
    """

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.label = f"capture-{self.name}"
        self.interval = interval

    def _open(self) -> None:
        return None

    @abstractmethod
    def _capture(self, now: float) -> T:
        """Make or read one item; runs in the capture thread."""

    def _use(self, handle: None) -> None:
        deadline = time.monotonic()
        while not self._stopping.is_set():
            self._hand_over(self._capture(time.monotonic()))
            deadline += self.interval
            delay = deadline - time.monotonic()
            if delay < -self.interval:
                deadline = time.monotonic()  # fell behind: skip, do not burst
            elif delay > 0:
                self._stopping.wait(delay)
