"""Scale-out through a real Janus: the daemon forwards its one stream as RTP to a
streaming mountpoint, and five Chromium viewers watch through Janus, not the Pi."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests import janus_server, netns
from tests.access import TEST_PASSWORD, basic
from tests.browser import chromium

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(netns.why_unavailable() is not None, reason=str(netns.why_unavailable())),
    pytest.mark.skipif(not janus_server.available(), reason="Debian's janus is not installed"),
]

BROWSER = str(Path(__file__).parent / "chromium-in-viewer-ns")


def daemon_metric(name: str) -> float:
    # Inside the camera's namespace, as the admin; the daemon's certificate is not
    # what this test is about, so it is not checked here.
    headers = basic("admin", TEST_PASSWORD)
    url = f"https://{netns.CAM_IP}:8443/metrics"
    request = f"urllib.request.Request({url!r}, headers={headers!r})"
    script = (
        "import ssl, urllib.request;"
        f"print(urllib.request.urlopen({request}, context=ssl._create_unverified_context())"
        ".read().decode())"
    )
    text = netns.in_ns(netns.CAM, sys.executable, "-c", script).stdout
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_five_viewers_watch_through_janus_and_the_camera_serves_none_of_them(
    tmp_path: Path,
) -> None:
    with janus_server.camera_forwarding_to_janus(tmp_path) as (_, janus):
        with chromium(executable=BROWSER) as browser:
            pages = [browser.new_page() for _ in range(5)]
            for page in pages:
                page.set_content("<title>through Janus</title>")
                page.evaluate(janus_server.WATCH, janus_server.API)
            deadline = time.monotonic() + 30
            while min(page.evaluate(janus_server.FRAMES) for page in pages) <= 30:
                assert time.monotonic() < deadline, janus.log.read_text()[-2000:]
                time.sleep(0.5)
            time.sleep(3)
            assert min(page.evaluate(janus_server.FRAMES) for page in pages) > 60  # still playing
        # The five viewers are Janus's, not the camera's: no sessions, one encode.
        # (Its CPU with and without them: `bench/janus_fanout.py`.)
        assert daemon_metric("peercam_viewers") == 0
        assert daemon_metric('peercam_encoder_running{codec="h264"}') == 1
