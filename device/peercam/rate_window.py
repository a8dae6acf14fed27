"""How many times each client did something in the last window of seconds."""

from __future__ import annotations

import time
from collections import deque


class RateWindow:
    """Counts events per key over a sliding window; keys gone quiet are forgotten so
    that a scan from many addresses cannot grow it without bound."""

    def __init__(self, window: float = 60.0, max_keys: int = 10_000) -> None:
        self._window = window
        self._max_keys = max_keys
        self._times: dict[str, deque[float]] = {}

    def count(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        times = self._times.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._times[key]
            return 0
        return len(times)

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.setdefault(key, deque()).append(now)
        if len(self._times) > self._max_keys:
            self._times = {
                k: times for k, times in self._times.items() if times[-1] > now - self._window
            }

    def clear(self, key: str) -> None:
        self._times.pop(key, None)

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until the oldest counted event leaves the window."""
        now = time.monotonic() if now is None else now
        times = self._times.get(key)
        return max(0.0, times[0] + self._window - now) if times else 0.0
