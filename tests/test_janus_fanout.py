"""Scale-out through a real Janus: the daemon forwards its one stream as RTP to a
streaming mountpoint, and five Chromium viewers watch through Janus, not the Pi."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import janus_server, netns
from tests.browser import chromium
from tests.daemon_process import DaemonProcess

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(netns.why_unavailable() is not None, reason=str(netns.why_unavailable())),
    pytest.mark.skipif(not janus_server.available(), reason="Debian's janus is not installed"),
]

BROWSER = str(Path(__file__).parent / "chromium-in-viewer-ns")

# A minimal client of Janus's HTTP API: create a session, attach the streaming plugin,
# watch mountpoint 1, answer its offer, start; then keep long-polling (keepalive).
WATCH = """
async (api) => {
  const transaction = () => Math.random().toString(36).slice(2);
  const post = async (url, body) => {
    const message = JSON.stringify({ ...body, transaction: transaction() });
    return (await fetch(url, { method: 'POST', body: message })).json();
  };
  const session = (await post(api, { janus: 'create' })).data.id;
  const base = `${api}/${session}`;
  const handle = (await post(base, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data.id;
  await post(`${base}/${handle}`, { janus: 'message', body: { request: 'watch', id: 1 } });
  let jsep = null;
  while (!jsep) {
    const events = [].concat(await (await fetch(`${base}?maxev=5&rid=${Date.now()}`)).json());
    jsep = events.find((e) => e.jsep)?.jsep ?? null;
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  await pc.setRemoteDescription(jsep);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') done();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') done();
    });
  });
  const start = { janus: 'message', body: { request: 'start' }, jsep: pc.localDescription };
  await post(`${base}/${handle}`, start);
  (async () => {
    for (;;) {
      try { await fetch(`${base}?maxev=5&rid=${Date.now()}`); } catch { return; }
    }
  })();
  window.janusPc = pc;
}
"""

FRAMES = """
async () => {
  let frames = 0;
  (await window.janusPc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded;
  });
  return frames;
}
"""


def daemon_metric(name: str) -> float:
    script = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://{netns.CAM_IP}:8080/metrics').read().decode())"
    )
    text = netns.in_ns(netns.CAM, sys.executable, "-c", script).stdout
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_five_viewers_watch_through_janus_at_no_extra_cost_to_the_camera(
    tmp_path: Path,
) -> None:
    with netns.network():
        janus = janus_server.Janus(tmp_path / "janus")
        janus.start()
        workdir = tmp_path / "daemon"
        workdir.mkdir()
        daemon = DaemonProcess(
            workdir,
            f"""
[camera]
source = "test"
size = "640x480"
[video]
codecs = ["h264"]
[[republish.rtp]]
host = "10.71.1.1"
video_port = {janus_server.VIDEO_PORT}
audio_port = {janus_server.AUDIO_PORT}
""",
            netns=netns.CAM,
        )
        try:
            process = psutil.Process(daemon.process.pid)
            time.sleep(3)
            process.cpu_percent()
            time.sleep(8)
            alone = process.cpu_percent()
            with chromium(executable=BROWSER) as browser:
                pages = [browser.new_page() for _ in range(5)]
                for page in pages:
                    page.set_content("<title>through Janus</title>")
                    page.evaluate(WATCH, janus_server.API)
                deadline = time.monotonic() + 30
                while min(page.evaluate(FRAMES) for page in pages) <= 30:
                    assert time.monotonic() < deadline, janus.log.read_text()[-2000:]
                    time.sleep(0.5)
                process.cpu_percent()
                time.sleep(8)
                watched = process.cpu_percent()
                assert min(page.evaluate(FRAMES) for page in pages) > 100  # still playing
            # The five viewers are Janus's, not the camera's: no sessions, no extra encode.
            assert daemon_metric("peercam_viewers") == 0
            assert daemon_metric('peercam_encoder_running{codec="h264"}') == 1
            print(
                f"daemon CPU: {alone:.1f} % of a core forwarding alone, {watched:.1f} % with "
                f"5 Janus viewers (ratio {watched / alone:.2f})"
            )
        finally:
            daemon.terminate()
            janus.stop()
