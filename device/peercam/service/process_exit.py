"""Ending the process when a native runtime with threads of its own is loaded.

livekit's binding (the echo canceller) starts a Rust tokio runtime whose worker
threads outlive Python's shutdown: while the C library's exit() tears the process
down, a worker can panic inside a function that cannot unwind, and the process
aborts (SIGABRT, status 134) after its work was done — measured here at about one
`peercam check` in thirty, more often under load. Under systemd that is a daemon
stopped on purpose reported as crashed. So once that runtime is loaded the process
ends with _exit(), after everything Python would have flushed is flushed: the
kernel then stops every thread at once and no teardown code runs beside them."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

NATIVE_RUNTIMES = ("livekit.rtc",)


def end_process(code: int) -> NoReturn:
    if not any(name in sys.modules for name in NATIVE_RUNTIMES):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe: nothing more to say on it
    os._exit(code)
