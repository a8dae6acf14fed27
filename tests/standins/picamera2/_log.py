"""The stand-in's record of calls, for tests in another process to read."""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def record(event: str) -> None:
    path = os.environ.get("PICAMERA2_STANDIN_LOG")
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as log:
        log.write(event + "\n")
