"""The thread pool behind `asyncio.to_thread` and `run_in_executor(None, ...)`.

The same size as asyncio's default, but its threads carry a name, so the daemon can
tell them apart from everything else: a pool's worker, once started, waits for work
for the life of the process. That is bounded growth, up to `max_workers`; a thread
count that goes past the pool and keeps growing is a leak."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

PREFIX = "peercam-blocking"
MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's own default


def install(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix=PREFIX)
    loop.set_default_executor(pool)
    return pool


def worker_count() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(PREFIX))
