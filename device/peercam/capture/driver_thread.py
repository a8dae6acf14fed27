"""A blocking driver in a thread of its own, kept alive through failures.

Cameras, sound cards and their stand-ins block in reads and writes, so each runs in
its own thread. The thread opens the device, uses it until the stream ends or fails,
and opens it again. While the device is missing it retries with backoff (doubling up
to a ceiling), saying so in the log, until it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Handle = TypeVar("Handle")


class DriverThread(ABC, Generic[Handle]):
    label: str  # names the device in log lines, e.g. "microphone default"

    def __init__(self, backoff: tuple[float, float] = (1.0, 30.0)) -> None:
        self._backoff = backoff
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _start_thread(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.label, daemon=True)
        self._thread.start()

    async def _stop_thread(self) -> bool:
        """Stop and join the thread; False if it was not running."""
        thread, self._thread = self._thread, None
        if thread is None:
            return False
        self._stopping.set()
        await asyncio.to_thread(thread.join)
        return True

    @abstractmethod
    def _open(self) -> Handle: ...

    @abstractmethod
    def _use(self, handle: Handle) -> None:
        """Work with the open device; return when its stream ends."""

    def _close(self, handle: Handle) -> None:
        """Release the device (also after a failure)."""

    def _delay_after_end(self, backoff: float) -> float:
        """How long to wait before reopening a device whose stream simply ended."""
        return backoff

    def _run(self) -> None:
        first, longest = self._backoff
        delay = first
        while not self._stopping.is_set():
            try:
                handle = self._open()
            except Exception as error:  # each driver fails in its own words
                logger.warning("%s unavailable (%s); retrying in %.1f s", self.label, error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, longest)
                continue
            delay = first
            try:
                self._use(handle)
                wait = 0.0 if self._stopping.is_set() else self._delay_after_end(delay)
            except Exception as error:
                logger.warning("%s failed (%s); reopening", self.label, error)
                wait = delay
            finally:
                self._close(handle)
            self._stopping.wait(wait)
