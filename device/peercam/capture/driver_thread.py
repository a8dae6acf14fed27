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
import time
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Handle = TypeVar("Handle")

# How long stopping waits for a driver thread. A driver call can hang for good (a
# picamera2 whose processing thread died waits forever in stop(), picamera2.py:1423);
# the daemon must still shut down, so such a thread is left behind (it is a daemon
# thread) and said so.
JOIN_TIMEOUT = 10.0


class DriverThread(ABC, Generic[Handle]):
    label: str  # names the device in log lines, e.g. "microphone default"

    def __init__(self, backoff: tuple[float, float] = (1.0, 30.0)) -> None:
        self._backoff = backoff
        self._thread: threading.Thread | None = None
        self._thread_stop: threading.Event | None = None
        # Each thread has a stop event of its own: a start while an earlier thread is
        # still winding down (a viewer arriving as the last one leaves) must not
        # revive that thread by clearing the event it is about to see.
        self._local = threading.local()
        self.busy_since: float | None = None  # monotonic; while the device is open
        self.last_item_at = 0.0  # monotonic; set by subclasses per item

    @property
    def _stopping(self) -> threading.Event:
        """The stop event of the calling driver thread."""
        event: threading.Event | None = getattr(self._local, "stopping", None)
        # Off a driver thread there is nothing to stop: a fresh event, never shared.
        return event if event is not None else threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _start_thread(self) -> None:
        self._thread_stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._thread_stop,), name=self.label, daemon=True
        )
        self._thread.start()

    async def _stop_thread(self) -> bool:
        """Stop and join the thread; False if it was not running."""
        thread, stop = self._thread, self._thread_stop
        self._thread = self._thread_stop = None
        self.busy_since = None
        if thread is None or stop is None:
            return False
        stop.set()
        await asyncio.to_thread(thread.join, JOIN_TIMEOUT)
        if thread.is_alive():
            logger.warning(
                "%s did not stop within %.0f s; its thread is left behind", self.label, JOIN_TIMEOUT
            )
        return True

    def stalled_for(self, now: float) -> float:
        """Seconds the open device has delivered nothing (0 while it is not open)."""
        since = self.busy_since
        return 0.0 if since is None else now - max(since, self.last_item_at)

    def abandon_thread(self) -> None:
        """Leave a driver call that hangs behind and open the device again in a new
        thread. The old thread exits if the call ever returns; it is a daemon thread,
        so it cannot hold up shutdown."""
        if self._thread_stop is not None:
            self._thread_stop.set()
        self.busy_since = None
        self._start_thread()

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

    def _run(self, stopping: threading.Event) -> None:
        self._local.stopping = stopping
        first, longest = self._backoff
        delay = first
        while not stopping.is_set():
            try:
                handle = self._open()
            except Exception as error:  # each driver fails in its own words
                logger.warning("%s unavailable (%s); retrying in %.1f s", self.label, error, delay)
                stopping.wait(delay)
                delay = min(delay * 2, longest)
                continue
            delay = first
            if not stopping.is_set():
                self.busy_since = time.monotonic()
            try:
                self._use(handle)
                wait = 0.0 if stopping.is_set() else self._delay_after_end(delay)
            except Exception as error:
                logger.warning("%s failed (%s); reopening", self.label, error)
                wait = delay
            finally:
                if not stopping.is_set():
                    self.busy_since = None
                self._close(handle)
            stopping.wait(wait)
