"""No log line in a tight loop: the same line at most a few times a minute.

An error that repeats (accept failing for want of descriptors, a flood of bad
requests, a camera that keeps failing) once wrote 100 MB in 40 s to a card that is
meant to last years. Lines are "the same" when they come from the same logger at the
same level with the same format string, whatever their arguments; the first few of a
minute pass, the rest are counted, and the next one to pass says how many were not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

PER_WINDOW = 10
WINDOW_SECONDS = 60.0
# Kinds of line remembered at once; older windows are forgotten first.
MAX_KINDS = 1000

Key = tuple[str, int, str]


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0


class RepeatLimit(logging.Filter):
    def __init__(
        self,
        per_window: int = PER_WINDOW,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._per_window = per_window
        self._window = window
        self._clock = clock
        self._windows: dict[Key, _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        key = (record.name, record.levelno, str(record.msg))
        window = self._windows.get(key)
        if window is None or now - window.started >= self._window:
            suppressed = window.suppressed if window is not None else 0
            window = self._windows[key] = _Window(now)
            self._forget_old(now)
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} more like this suppressed]"
        if window.passed >= self._per_window:
            window.suppressed += 1
            return False
        window.passed += 1
        return True

    def _forget_old(self, now: float) -> None:
        if len(self._windows) <= MAX_KINDS:
            return
        for key, window in list(self._windows.items()):
            if now - window.started >= self._window:
                del self._windows[key]
        while len(self._windows) > MAX_KINDS:
            del self._windows[next(iter(self._windows))]


def limit_repeats(handlers: list[logging.Handler]) -> None:
    """Put one shared limit on `handlers` (the root logger's): every line passes it."""
    limit = RepeatLimit()
    for handler in handlers:
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(limit)
