"""Drives tests/interop/webrtcbin_viewer.py (GStreamer's webrtcbin as a WHEP viewer)
from a test: the offer it makes, the answer it is given, what it decoded."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("webrtcbin_viewer.py")
# make test installs these (Makefile's TEST_DEBS); the check says which is missing.
ELEMENTS = ("webrtcbin", "nicesrc", "dtlssrtpdec", "avdec_h264", "vp8dec", "opusdec")
_CHECK = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import Gst, GstWebRTC
Gst.init(None)
print(" ".join(e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None))
"""


def missing_elements() -> str:
    """The GStreamer elements (or Python bindings) the viewer needs that are missing."""
    found = subprocess.run(
        [SYSTEM_PYTHON, "-c", _CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    if found.returncode != 0:
        return f"GStreamer's Python bindings: {found.stderr.strip().splitlines()[-1:]}"
    return found.stdout.strip()


class WebrtcbinViewer:
    def __init__(self, offer_kind: str, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), offer_kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={"GST_DEBUG": "webrtcbin:3,dtlsconnection:3", "PATH": "/usr/bin:/bin"},
        )

    def __enter__(self) -> WebrtcbinViewer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _read(self, key: str, within: float) -> Any:
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), within)
            if not line:
                raise RuntimeError(f"webrtcbin viewer exited ({self.process.poll()})")
            message = json.loads(line)
            if key in message:
                return message[key]

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    async def offer(self, within: float = 20) -> str:
        offer: str = await self._read("offer", within)
        return offer

    def answer(self, sdp: str) -> None:
        self._send({"answer": sdp})

    async def report(self) -> dict[str, Any]:
        self._send({"report": True})
        report: dict[str, Any] = await self._read("report", 10)
        return report

    async def wait_for(self, done: Any, within: float = 30) -> dict[str, Any]:
        """Reports until `done(report)`; the last one, whichever way it ends."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            report = await self.report()
            if done(report) or asyncio.get_running_loop().time() > deadline:
                return report
            await asyncio.sleep(0.25)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"stop": True})
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log.close()
