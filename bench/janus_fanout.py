"""The camera's CPU when five viewers watch through Janus instead of the camera.

Uses the namespace test bed (needs root and Debian's janus): the daemon forwards RTP
to a Janus streaming mountpoint, and its CPU is measured with nobody watching Janus,
then with five Chromium viewers watching there. Target: within 10 %. Prints; asserts
nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil
from tests import janus_server, netns
from tests.browser import chromium

from bench.report import publish

BROWSER = str(Path(__file__).resolve().parent.parent / "tests" / "chromium-in-viewer-ns")


def main() -> None:
    reason = netns.why_unavailable()
    if reason or not janus_server.available():
        print(f"janus fan-out benchmark skipped: {reason or 'janus is not installed'}")
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        janus_server.camera_forwarding_to_janus(Path(tmp)) as (daemon, _),
    ):
        process = psutil.Process(daemon.process.pid)
        time.sleep(3)
        process.cpu_percent()
        time.sleep(10)
        alone = process.cpu_percent()
        with chromium(executable=BROWSER) as browser:
            pages = [browser.new_page() for _ in range(5)]
            for page in pages:
                page.set_content("<title>through Janus</title>")
                page.evaluate(janus_server.WATCH, janus_server.API)
            time.sleep(5)
            process.cpu_percent()
            time.sleep(10)
            watched = process.cpu_percent()
            frames = [page.evaluate(janus_server.FRAMES) for page in pages]
    publish(
        "janus_fanout.md",
        [
            "# Five viewers through Janus (RTP forward, 640x480@30 H.264)",
            "",
            f"- camera daemon CPU, forwarding with nobody watching: {alone:.1f} % of a core",
            f"- with 5 Chromium viewers on Janus: {watched:.1f} % of a core",
            f"- ratio {watched / alone:.2f} (target ≤ 1.10); frames the viewers decoded: {frames}",
        ],
    )


if __name__ == "__main__":
    main()
