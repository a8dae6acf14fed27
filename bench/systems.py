"""The systems the benchmark compares, each started on this machine with one source.

- peercam: the daemon, encode once, its own viewer page.
- aiortc: aiortc's standard way (bench/baseline_server.py): a MediaRelay'ed track
  encoded again for every viewer. Same test pattern, burned-in time code included.
- Janus: Debian's janus, streaming plugin, fed by the RTP H.264 the peercam daemon
  forwards (so the same pictures, encoded once by the same encoder).
- GStreamer: webrtcbin behind a WHEP endpoint (bench/gstreamer_server.py), fed the same
  forwarded RTP.

For Janus and GStreamer the daemon keeps capturing and encoding, so their CPU and RSS
are the daemon's plus the relay's: what a user running that pair would pay. Every
system but peercam is viewed through bench/whep_page.html with the browser's default
playout, served at the system's own origin.

Each runs with audio by default (peercam's default configuration): the same 440 Hz
test tone, Opus, to the page and to every receiver. peercam encodes it once and sends
it as a media stream of its own; aiortc encodes it per viewer; Janus and GStreamer
relay the daemon's forwarded Opus. Each system's own SDP decides whether Chromium
lip-syncs its audio and video (bench/glass_to_glass.py reports which).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tests import janus_server
from tests.access import Access

from bench.processes import LOOPBACK, ROOT, free_port, start_peercam, start_server, stop

PAGE = Path(__file__).with_name("whep_page.html")
SYSTEM_PYTHON = "/usr/bin/python3"

PEERCAM_CONFIG = """
[camera]
source = "test"
size = "{size}"
fps = {fps}
[video]
codecs = ["{codec}"]
bitrate_kbps = {kbps}
low_bitrate_kbps = {low_kbps}
[audio]
enabled = {audio}
[viewers]
max_viewers = 200
# Every receiver comes from this one address, as one user.
max_per_client = 200
max_per_user = 200
sessions_per_minute_per_client = 10000
[rtsp]
max_sessions = 200
max_sessions_per_client = 200
"""

# peercam's default low layer (issue 26): the camera's small picture, for viewers whose
# path cannot carry the main one. Named here so a variant can turn it off.
LOW_LAYER_KBPS = 500

FORWARD = """
[[republish.rtp]]
host = "127.0.0.1"
video_port = {port}
audio_port = {audio_port}
"""


def video_mode(size: str) -> tuple[str, int]:
    """A size as the benchmark names it, "640x480" or with a frame rate, "320x240@15":
    (the camera's size, its frame rate; 30 unless named)."""
    resolution, _, fps = size.partition("@")
    return resolution, int(fps or 30)


def bitrate_kbps(size: str) -> int:
    """The same bitrate for every system at a size (aiortc's encoder picks its own)."""
    return {"320x240": 400, "640x480": 1500}.get(video_mode(size)[0], 3000)


@dataclass
class Running:
    name: str
    processes: list[psutil.Process]
    # Puts a fresh page into the state of a viewer watching; the page shows #video.
    open_viewer: Callable[[object], None]
    # Where a second visit measures navigation → first frame (peercam logs in first).
    viewer_url: str
    first_frame_expression: str
    receiver_args: list[str]
    notes: list[str] = field(default_factory=list)
    # peercam's /metrics text, for the daemon's own share of the latency.
    daemon_metrics: Callable[[], str] | None = None
    # peercam: bench/receivers.py's arguments for RTSP clients of the same stream.
    rtsp_receiver_args: list[str] | None = None
    # CPU seconds of the relaying part alone, where each viewer's packets are made and
    # sent: peercam's event-loop thread (capture and encoders have threads of their
    # own), a relay's own process (not the daemon feeding it). Its slope over viewers
    # leaves out the encoders' variation between windows, which is noise there.
    relay_seconds: Callable[[], float] | None = None

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.processes)

    def rss_mb(self) -> float:
        return float(sum(p.memory_info().rss for p in self.processes)) / 2**20

    def anonymous_mb(self) -> float:
        """Resident memory not backed by a file (RssAnon, proc(5): RSS less its file and
        shared-memory pages): what the system allocated itself — heap, buffers, thread
        stacks. RSS, and USS too, also count library pages mapped so far, which follow
        the page cache: the daemon at 10 viewers, same code and packages, read 147 and
        158 MB RSS (107 and 117 MB USS) from two virtual environments, and 89.8 MB
        anonymous from both (stop 43)."""
        return (
            float(sum(m.rss - m.shared for m in (p.memory_info() for p in self.processes))) / 2**20
        )


def serve_bench_page(page: object, origin: str) -> None:
    """Answer `origin`/bench-viewer with the plain viewer page, in the browser only."""
    body = PAGE.read_text()
    page.route(  # type: ignore[attr-defined]
        lambda url: url.startswith(f"{origin}/bench-viewer"),
        lambda route: route.fulfill(status=200, content_type="text/html", body=body),
    )


def config_file(
    directory: Path,
    size: str,
    codec: str,
    forward_port: int | None,
    audio: bool = True,
    frame_sender: bool = True,
    webrtc: str = "",
    low_kbps: int = LOW_LAYER_KBPS,
) -> Path:
    resolution, fps = video_mode(size)
    text = PEERCAM_CONFIG.format(
        size=resolution, fps=fps, codec=codec.lower(), kbps=bitrate_kbps(size),
        low_kbps=low_kbps, audio=str(audio).lower(),
    )  # fmt: skip
    if not frame_sender:
        webrtc += "frame_sender = false\n"
    if webrtc:
        text += "[webrtc]\n" + webrtc
    if forward_port is not None:
        text += FORWARD.format(port=forward_port, audio_port=forward_port + 2)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "peercam.toml"
    path.write_text(text)
    return path


@contextmanager
def _peercam_daemon(
    directory: Path,
    size: str,
    codec: str,
    forward_port: int | None = None,
    audio: bool = True,
    rtsp_port: int = 0,
    frame_sender: bool = True,
    webrtc: str = "",
    host: str = LOOPBACK,
    low_kbps: int = LOW_LAYER_KBPS,
) -> Iterator[tuple[subprocess.Popen[str], Access]]:
    config = config_file(
        directory, size, codec, forward_port, audio, frame_sender, webrtc, low_kbps
    )
    server, access = start_peercam(config, rtsp_port=rtsp_port, host=host)
    try:
        yield server, access
    finally:
        stop(server)


def _credentials(access: Access) -> list[str]:
    arguments = ["--authorization", access.headers["Authorization"]]
    if access.cert is not None:
        arguments += ["--cafile", str(access.cert)]
    return arguments


def _audio_args(audio: bool) -> tuple[str, list[str]]:
    """What the bench page's query and the receivers add to ask for audio."""
    return ("&audio=1", ["--audio"]) if audio else ("", [])


def running_peercam(
    server: subprocess.Popen[str],
    access: Access,
    codec: str,
    name: str = "peercam",
    audio: bool = True,
) -> Running:
    from tests.browser import open_page

    def open_viewer(page: object) -> None:
        open_page(page, access.base, f"/?codec={codec}")  # type: ignore[arg-type]

    _, receiving = _audio_args(audio)

    return Running(
        name=name,
        processes=[psutil.Process(server.pid)],
        open_viewer=open_viewer,
        viewer_url=f"{access.base}/?codec={codec}",
        first_frame_expression="window.peercam && window.peercam.firstFrameMs",
        receiver_args=[f"{access.base}/whep", *_credentials(access), *receiving],
        daemon_metrics=lambda: access.urlopen("/metrics", timeout=5).decode(),
        relay_seconds=lambda: main_thread_seconds(server.pid),
    )


def cpu_seconds_of(processes: Iterable[psutil.Process]) -> float:
    """CPU seconds of `processes` together, all their threads, user and system."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def main_thread_seconds(pid: int) -> float:
    """CPU seconds of process `pid`'s main thread (its thread id is the pid)."""
    thread = next(t for t in psutil.Process(pid).threads() if t.id == pid)
    return float(thread.user_time + thread.system_time)


def plain_page_system(
    name: str,
    processes: list[subprocess.Popen[Any]],
    origin: str,
    query: str,
    receiver_args: list[str],
    note: str,
    relay: subprocess.Popen[Any] | None = None,
) -> Running:
    """A system viewed through bench/whep_page.html at its own `origin`; `relay`, where
    it has one, is the process that relays to the viewers."""
    url = f"{origin}/bench-viewer?{query}"
    relaying = [] if relay is None else [psutil.Process(relay.pid)]

    def open_viewer(page: object) -> None:
        serve_bench_page(page, origin)
        page.goto(url)  # type: ignore[attr-defined]

    return Running(
        name=name,
        processes=[psutil.Process(p.pid) for p in processes],
        open_viewer=open_viewer,
        viewer_url=url,
        first_frame_expression="window.benchFirstFrameMs",
        receiver_args=receiver_args,
        notes=[note],
        relay_seconds=None if relay is None else lambda: cpu_seconds_of(relaying),
    )


@contextmanager
def peercam(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    rtsp_port = free_port()
    with _peercam_daemon(directory, size, codec, audio=audio, rtsp_port=rtsp_port, host=host) as (
        server,
        access,
    ):
        running = running_peercam(server, access, codec, audio=audio)
        # The same daemon's RTSP stream, for RTSP clients in place of WebRTC viewers.
        running.rtsp_receiver_args = [
            "--rtsp", f"rtsp://{host}:{rtsp_port}/live" + ("" if audio else "/noaudio"),
            "--authorization", access.headers["Authorization"],
        ]  # fmt: skip
        yield running


@contextmanager
def peercam_without_layers(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    """peercam with `video.low_bitrate_kbps = 0`: one layer, every viewer gets the main
    stream whatever its path carries (as before issue 26)."""
    with _peercam_daemon(directory, size, codec, audio=audio, host=host, low_kbps=0) as (
        server,
        access,
    ):
        running = running_peercam(server, access, codec, "peercam, no layers", audio)
        running.notes = ["peercam with `video.low_bitrate_kbps = 0`: the main layer only"]
        yield running


@contextmanager
def peercam_aiortc_sender(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    """peercam with `webrtc.frame_sender = false`: each viewer's packets through
    aiortc's own sender, one by one, as before issue 25 (the same run's baseline)."""
    with _peercam_daemon(directory, size, codec, audio=audio, frame_sender=False, host=host) as (
        server,
        access,
    ):
        running = running_peercam(server, access, codec, "peercam, aiortc's sender", audio)
        running.notes = ["peercam with `webrtc.frame_sender = false` (CPU per viewer only)"]
        yield running


TURN_RELAYED = """\
ice_transport_policy = "relay"
[[webrtc.ice_servers]]
urls = ["turn:127.0.0.1:{port}?transport={transport}"]
username = "bench"
credential = "bench"
"""


@contextmanager
def coturn(directory: Path) -> Iterator[int]:
    """coturn on loopback (UDP and TCP on one port), user bench/bench: its port."""
    port = free_port()
    log = (directory / "coturn.log").open("wb")
    command = ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
               "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
               "--allow-loopback-peers", "--lt-cred-mech", "--user=bench:bench",
               "--realm=peercam.bench", "--log-file=stdout", "--simple-log"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _tcp_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                text = (directory / "coturn.log").read_text()
                raise RuntimeError(f"coturn did not start: {text}")
            time.sleep(0.1)
        yield port
    finally:
        stop(process)
        log.close()


def _tcp_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _peercam_turn(transport: str) -> Callable[..., Any]:
    @contextmanager
    def system(
        directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
    ) -> Iterator[Running]:
        """peercam with every viewer relayed by coturn from the daemon's own allocation
        (`ice_transport_policy = "relay"`): its packets leave through aiortc's TURN
        transport, not a socket of the pair's own. coturn's CPU is not counted."""
        with coturn(directory) as port, _peercam_daemon(
            directory, size, codec, audio=audio,
            webrtc=TURN_RELAYED.format(port=port, transport=transport), host=host,
        ) as (server, access):  # fmt: skip
            running = running_peercam(
                server, access, codec, f"peercam, TURN/{transport.upper()} relayed", audio
            )
            running.notes = [
                f"peercam with every viewer relayed by coturn over {transport.upper()} from"
                " the daemon's own allocation (`ice_transport_policy = \"relay\"`); coturn's"
                " CPU not counted (CPU per viewer only)"
            ]
            yield running

    return system


@contextmanager
def aiortc(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    del directory
    port = free_port()
    command = [sys.executable, "-m", "bench.baseline_server", "--port", str(port),
               "--host", host, "--size", size, "--codec", codec]  # fmt: skip
    server = start_server(command, "serving on")
    origin = f"http://{host}:{port}"
    query, receiving = _audio_args(audio)
    try:
        yield plain_page_system(
            "aiortc", [server], origin, f"endpoint=/whep&codec={codec}{query}",
            [f"{origin}/whep", *receiving],
            "aiortc's own encoders (libx264 / libvpx, and Opus for the tone) run once per"
            " viewer",
        )  # fmt: skip
    finally:
        stop(server)


def janus_available() -> str | None:
    return None if janus_server.available() else "Debian's janus is not installed"


def gstreamer_available() -> str | None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstWebRTC', '1.0'); "
         "from gi.repository import Gst; Gst.init(None); "
         "assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('nicesrc')"],
        capture_output=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return "GStreamer's webrtcbin (gstreamer1.0-plugins-bad, -nice, python3-gst-1.0) missing"
    return None


def _primary_interface() -> str:
    """The interface of the default route: Janus's ICE uses it, as the browser does."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    return "lo"


@contextmanager
def janus(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    if codec != "H264":
        raise ValueError("the RTP-fed Janus mountpoint carries H.264 only")
    rtp_port, http_port = free_udp_port_pair(), free_port()
    folder = directory / "janus"
    audio_port = rtp_port + 2 if audio else None
    # Janus's ICE offers one interface's address; away from loopback, the one asked for.
    ice = _primary_interface() if host == LOOPBACK else host
    janus_server.write_config(folder, ice, rtp_port, audio_port, http_port)
    with ExitStack() as stack:
        server, _ = stack.enter_context(
            _peercam_daemon(directory, size, codec, rtp_port, audio=audio)
        )
        log = stack.enter_context((folder / "janus.log").open("wb"))
        relay = subprocess.Popen(
            ["janus", "-F", str(folder), "-C", str(folder / "janus.jcfg"), "--disable-colors"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(stop, relay)
        origin = f"http://{host}:{http_port}"
        _wait_for(f"{origin}/janus/info", relay, folder / "janus.log")
        yield plain_page_system(
            "Janus", [server, relay], origin, "janus=/janus", ["--janus", f"{origin}/janus"],
            "Janus streaming plugin, fed RTP by the peercam daemon (its CPU included)",
            relay,
        )  # fmt: skip


@contextmanager
def _relayed(
    directory: Path, size: str, codec: str, audio: bool, script: str, arguments: list[str]
) -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    """The daemon forwarding RTP (H.264, and Opus two ports up) to a GStreamer relay,
    bench/`script` under Debian's python3 with `arguments`: (daemon, relay)."""
    if codec != "H264":
        raise ValueError("the GStreamer relays are fed H.264 only")
    rtp_port = free_udp_port_pair()
    audio_port = ["--audio-port", str(rtp_port + 2)] if audio else []
    with ExitStack() as stack:
        server, _ = stack.enter_context(
            _peercam_daemon(directory, size, codec, rtp_port, audio=audio)
        )
        relay = start_server(
            [SYSTEM_PYTHON, str(ROOT / "bench" / script), *arguments,
             "--rtp-port", str(rtp_port), *audio_port],
            "serving on",
            env={"PYTHONPATH": ""},
        )  # fmt: skip
        stack.callback(stop, relay)
        yield server, relay


@contextmanager
def gstreamer(
    directory: Path, size: str, codec: str, audio: bool = True, host: str = LOOPBACK
) -> Iterator[Running]:
    http_port = free_port()
    query, receiving = _audio_args(audio)
    arguments = ["--http-port", str(http_port), "--http-host", host]
    with _relayed(directory, size, codec, audio, "gstreamer_server.py", arguments) as (
        server,
        relay,
    ):
        origin = f"http://{host}:{http_port}"
        yield plain_page_system(
            "GStreamer", [server, relay], origin, f"endpoint=/whep&codec=H264{query}",
            [f"{origin}/whep", *receiving],
            "GStreamer webrtcbin, fed RTP by the peercam daemon (its CPU included)",
            relay,
        )  # fmt: skip


@contextmanager
def gst_rtsp(directory: Path, size: str, codec: str, audio: bool = True) -> Iterator[Running]:
    """gst-rtsp-server relaying the daemon's forwarded RTP to RTSP clients: the RTSP
    server compared with peercam's own (its CPU and the daemon's both counted)."""
    rtsp_port = free_port()
    arguments = ["--port", str(rtsp_port)]
    with _relayed(directory, size, codec, audio, "gst_rtsp_server.py", arguments) as (
        server,
        relay,
    ):
        address = f"rtsp://127.0.0.1:{rtsp_port}/live"
        yield Running(
            name="gst-rtsp-server",
            processes=[psutil.Process(p.pid) for p in (server, relay)],
            open_viewer=lambda page: None,
            viewer_url=address,
            first_frame_expression="",
            receiver_args=["--rtsp", address],
            notes=["gst-rtsp-server 1.22, one shared media fed RTP by the peercam daemon"],
        )


def gst_rtsp_available() -> str | None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c",
         "import gi; gi.require_version('GstRtspServer', '1.0');"
         " from gi.repository import GstRtspServer"],
        capture_output=True, env={"PYTHONPATH": ""}, check=False,
    )  # fmt: skip
    return None if probe.returncode == 0 else "Debian's gir1.2-gst-rtsp-server-1.0 is missing"


def free_udp_port_pair() -> int:
    """An even UDP port whose next-but-one (audio) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1]) & ~1
        if port < 65000 and all(_udp_free(p) for p in (port, port + 2)):
            return port
    raise RuntimeError("no free UDP port pair")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}") from None
            time.sleep(0.3)


SYSTEMS = {
    "peercam": peercam,
    "peercam-aiortc-sender": peercam_aiortc_sender,
    "peercam-without-layers": peercam_without_layers,
    "aiortc": aiortc,
    "janus": janus,
    "gstreamer": gstreamer,
    "peercam-turn-udp": _peercam_turn("udp"),
    "peercam-turn-tcp": _peercam_turn("tcp"),
}
# Measured for CPU per viewer only: a variant of a system already measured in full.
CPU_ONLY = {
    "peercam-aiortc-sender",
    "peercam-turn-udp",
    "peercam-turn-tcp",
    "peercam-without-layers",
}


def why_unavailable(name: str) -> str | None:
    if name.startswith("peercam-turn") and not shutil.which("turnserver"):
        return "coturn's turnserver is not installed"
    if name == "janus":
        return janus_available() or (None if shutil.which("janus") else "no janus binary")
    if name == "gstreamer":
        return gstreamer_available()
    return None
