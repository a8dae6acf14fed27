"""A WHEP viewer in a process of its own, printing when each video frame arrives.

Tests that load the daemon from the test process (fuzzing, churn) watch through it:
a viewer in a thread of the test process shares its interpreter lock with the load,
and would report the test's own pauses as stalls of the daemon's stream.

Run as `python -m tests.watching_viewer BASE CERT|- HEADERS_JSON`. Prints
`ready <session path>` once video flows, then one monotonic time per frame (the
clock is the system's, comparable across processes); ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from tests.access import Access
from tests.whep_viewer import WhepViewer


async def _watch(access: Access) -> None:
    loop = asyncio.get_running_loop()
    closed = loop.run_in_executor(None, sys.stdin.read)  # returns when stdin closes
    async with WhepViewer(access) as viewer:
        assert viewer.answer is not None
        await viewer.video_frames(1)
        print("ready", viewer.answer.location, flush=True)
        track = viewer.tracks["video"]
        while not closed.done():
            receiving = asyncio.ensure_future(track.recv())
            await asyncio.wait([receiving, closed], timeout=10, return_when="FIRST_COMPLETED")
            if not receiving.done():
                receiving.cancel()
                if closed.done():
                    return
                raise TimeoutError("no video frame for 10 s")
            receiving.result()
            print(f"{time.monotonic():.6f}", flush=True)


class WatchingViewer:
    """The viewer process, with the arrival times read back in a thread."""

    def __init__(self, access: Access) -> None:
        self.arrivals: list[float] = []
        self.session_path = ""
        headers = json.dumps(access.headers)
        cert = str(access.cert) if access.cert else "-"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.watching_viewer", access.base, cert, headers],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="viewer-reader")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "ready":
                self.session_path = rest
                self._ready.set()
            elif word:
                self.arrivals.append(float(word))

    def __enter__(self) -> WatchingViewer:
        self._reader.start()
        if not self._ready.wait(30):
            self.__exit__(None, None, None)
            raise AssertionError("the watching viewer never got video")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(5)

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def longest_gap(self, since: float) -> float:
        """The longest time without a frame from `since` until now."""
        times = [since, *[t for t in self.arrivals if t >= since], time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(times))


def main() -> None:
    base, cert, headers = sys.argv[1:4]
    access = Access(base, None if cert == "-" else Path(cert), json.loads(headers))
    asyncio.run(_watch(access))


if __name__ == "__main__":
    main()
