"""A real Janus (Debian's `janus`) with only its streaming plugin and HTTP transport,
run in the test bed's router namespace, where it has real interfaces on both sides."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import netns
from tests.daemon_process import DaemonProcess

LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEO_PORT, AUDIO_PORT, HTTP_PORT = 5004, 5006, 8088
ORIGIN = f"http://10.71.2.1:{HTTP_PORT}"
API = f"{ORIGIN}/janus"

MAIN = """
general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/none"
    loggers_folder = "{folder}/none"
    debug_level = 4
}}
media: {{ rtp_port_range = "20000-40000" }}
nat: {{ ignore_mdns = true  ice_enforce_list = "{enforce}" }}
"""

VIDEO_MEDIA = """{{ type = "video" mid = "v" port = {port} pt = 96 codec = "h264"
          fmtp = "profile-level-id=42e01f;packetization-mode=1" }}"""
AUDIO_MEDIA = """{{ type = "audio" mid = "a" port = {port} pt = 111 codec = "opus" }}"""

STREAMING = """
general: {{ }}
peercam: {{
    type = "rtp"
    id = 1
    description = "peercam"
    media = ( {media} )
}}
"""

HTTP = """
general: {{ json = "compact" base_path = "/janus" http = true port = {port} https = false }}
admin: {{ admin_http = false }}
cors: {{ allow_origin = "*" }}
"""


def available() -> bool:
    return (LIBS / "plugins" / "libjanus_streaming.so").exists()


def write_config(
    folder: Path, enforce: str, video_port: int, audio_port: int | None, http_port: int
) -> None:
    """Janus with only the streaming plugin (mountpoint 1: RTP H.264 on `video_port`,
    Opus on `audio_port` if given) and the HTTP API on `http_port`; ICE on `enforce`
    (an interface or address)."""
    for sub in ("plugins", "transports", "none"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for kind, library in (("plugins", "libjanus_streaming.so"), ("transports", "libjanus_http.so")):
        link = folder / kind / library
        if not link.is_symlink():
            link.symlink_to(LIBS / kind / library)
    media = [VIDEO_MEDIA.format(port=video_port)]
    if audio_port is not None:
        media.append(AUDIO_MEDIA.format(port=audio_port))
    (folder / "janus.jcfg").write_text(MAIN.format(folder=folder, enforce=enforce))
    (folder / "janus.plugin.streaming.jcfg").write_text(STREAMING.format(media=", ".join(media)))
    (folder / "janus.transport.http.jcfg").write_text(HTTP.format(port=http_port))


class Janus:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        write_config(folder, "10.71.2.1", VIDEO_PORT, AUDIO_PORT, HTTP_PORT)
        self.log = folder / "janus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns.NET, "janus", "-F", str(self.folder),
             "-C", str(self.folder / "janus.jcfg"), "--disable-colors"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            probe = netns.in_ns(
                netns.VIEW, "python3", "-c",
                f"import urllib.request; urllib.request.urlopen('{API}/info', timeout=1)",
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


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


@contextmanager
def camera_forwarding_to_janus(directory: Path) -> Iterator[tuple[DaemonProcess, Janus]]:
    """The test bed with Janus in the router and the daemon forwarding RTP to it."""
    with netns.network():
        janus = Janus(directory / "janus")
        janus.start()
        workdir = directory / "daemon"
        workdir.mkdir()
        config = f"""
[camera]
source = "test"
size = "640x480"
[video]
codecs = ["h264"]
[[republish.rtp]]
host = "10.71.1.1"
video_port = {VIDEO_PORT}
audio_port = {AUDIO_PORT}
"""
        daemon = DaemonProcess(workdir, config, netns=netns.CAM)
        try:
            yield daemon, janus
        finally:
            daemon.terminate()
            janus.stop()
