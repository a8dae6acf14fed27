"""The RTSP server (rtsp/) with real clients nobody here wrote: FFmpeg's ffprobe over
TCP and UDP, GStreamer's rtspsrc; Digest (each client's own form) and Basic over the
HTTP interface's accounts; and bad input answered with an RTSP error while another
client keeps streaming."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.access import TEST_PASSWORD
from tests.conftest import CAMERA_320, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.free_ports import unused_tcp_port
from tests.rtsp_client import RtspClient
from tests.test_churn import settled_footprint, wait_for_footprint
from tests.whep_viewer import WhepViewer

pytestmark = pytest.mark.timeout(120)

CONFIG = (
    CAMERA_320
    + """[video]
keyframe_interval = 1.0
[talkback]
enabled = false
"""
)  # RTSP is on by default; the tests' daemons listen on a free port (--rtsp-port 0)
FPS = 15


def rtsp_port(daemon: DaemonProcess) -> int:
    return int(daemon.logged(r"RTSP: rtsp://<camera>:(\d+)/live")[1])


def url(daemon: DaemonProcess, path: str = "/live", password: str = TEST_PASSWORD) -> str:
    return f"rtsp://admin:{password}@127.0.0.1:{rtsp_port(daemon)}{path}"


def ffprobe() -> str:
    found = shutil.which("ffprobe")
    if found is None:
        pytest.fail("ffprobe is missing: `make install-test` installs Debian's ffmpeg")
    return found


def probe_frames(address: str, transport: str, seconds: int = 3) -> dict[str, list[dict[str, str]]]:
    """The frames of the stream's first `seconds` (its own time), decoded by ffprobe."""
    result = subprocess.run(
        [ffprobe(), "-v", "error", "-rtsp_transport", transport, "-i", address,
         "-show_streams", "-show_frames", "-read_intervals", f"%+{seconds}",
         "-show_entries",
         "frame=media_type,pts_time,key_frame:stream=codec_name,codec_type,width,height",
         "-of", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data: dict[str, list[dict[str, str]]] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffprobe_decodes_video_and_audio_at_the_cameras_rate(
    start_daemon: StartDaemon, transport: str
) -> None:
    daemon = start_daemon(CONFIG)
    data = probe_frames(url(daemon), transport)
    codecs = {s["codec_type"]: s["codec_name"] for s in data["streams"]}
    assert codecs == {"video": "h264", "audio": "pcm_mulaw"}, codecs
    video = [f for f in data["frames"] if f["media_type"] == "video"]
    audio = [f for f in data["frames"] if f["media_type"] == "audio"]
    assert len(video) >= 30 and audio, (len(video), len(audio))
    # The rate in stream time (the frames' own timestamps), not the wall clock's;
    # FFmpeg gives the very first frame none (N/A) until the stream's clock is set.
    times = [float(f["pts_time"]) for f in video if "pts_time" in f]
    assert len(times) >= len(video) - 1
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - FPS) / FPS < 0.05, rate
    assert int(video[0]["key_frame"]) == 1  # a new client starts at a keyframe
    log = daemon.log()
    assert re.search(r"RTSP session \w+ for admin \(Digest\)", log), log[-2000:]
    assert "Traceback" not in log


def test_opus_aac_and_no_audio_streams_and_a_wrong_password(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(CONFIG)
    opus = probe_frames(url(daemon, "/live/opus"), "tcp", seconds=1)
    assert {s["codec_name"] for s in opus["streams"]} == {"h264", "opus"}
    # AAC (RFC 3640) for NVRs that keep only AAC: 1024-sample frames at 48 kHz.
    aac = probe_frames(url(daemon, "/live/aac"), "tcp", seconds=2)
    assert {s["codec_name"] for s in aac["streams"]} == {"h264", "aac"}
    times = [float(f["pts_time"]) for f in aac["frames"] if f["media_type"] == "audio"]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert abs(rate - 48000 / 1024) < 0.05 * 48000 / 1024, rate
    silent = probe_frames(url(daemon, "/live/noaudio"), "tcp", seconds=1)
    assert [s["codec_type"] for s in silent["streams"]] == ["video"]
    refused = subprocess.run(
        [ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i",
         url(daemon, password="wrong-password")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr[-500:]
    # FFmpeg answers the Digest challenge when offered one.
    assert "refused Digest for 'admin'" in daemon.log()


def test_a_busy_rtsp_port_does_not_keep_the_camera_down_and_off_means_closed(
    start_daemon: StartDaemon,
) -> None:
    """Another program on 8554 (MediaMTX, say): the page still comes up, RTSP is
    taken when the port is free; rtsp.enabled = false listens on nothing."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        daemon = start_daemon(CONFIG, "--rtsp-port", str(port))
        assert daemon.get("/healthz")
        assert f"RTSP: cannot listen on port {port}" in daemon.log()
    # Free now: the retry (5 s first) takes it.
    assert rtsp_port(daemon) == port
    frames = probe_frames(url(daemon, "/live/noaudio"), "tcp", seconds=1)
    assert frames["frames"], "no frames once RTSP took the freed port"
    off_port = unused_tcp_port()
    off = start_daemon(CONFIG + "[rtsp]\nenabled = false\n", "--rtsp-port", str(off_port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", off_port), timeout=5).close()
    assert "RTSP: rtsp://" not in off.log() and "ONVIF is off because RTSP is" in off.log()


def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read what comes back until it closes or
    goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except TimeoutError:
            pass
        return received


def test_bad_input_gets_an_rtsp_error_and_other_clients_keep_streaming(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG)
    port = rtsp_port(daemon)
    watcher = subprocess.Popen(
        [ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i", url(daemon),
         "-show_frames", "-read_intervals", "%+5", "-show_entries", "frame=media_type",
         "-of", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        cases = {
            b"garbage\r\n\r\n": b"RTSP/1.0 400",
            b"OPTIONS * HTTP/1.1\r\nCSeq: 1\r\n\r\n": b"RTSP/1.0 505",
            b"OPTIONS * RTSP/1.0\r\nCSeq: x\r\n\r\n": b"RTSP/1.0 400",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n": b" 431",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: " + b"a" * 9000 + b"\r\n\r\n": b" 431",
            b"PLAY rtsp://127.0.0.1/live RTSP/1.0\r\nCSeq: 2\r\n\r\n": b"RTSP/1.0 401",
            b"DESCRIBE rtsp://127.0.0.1/live RTSP/1.0\r\nCSeq: 3\r\n"
            b"Content-Length: 99999\r\n\r\n": b"RTSP/1.0 413",
            b"$\x00\x00\x05junk!OPTIONS * RTSP/1.0\r\nCSeq: 4\r\n\r\n": b"RTSP/1.0 200",
        }
        for request, expected in cases.items():
            answer = exchange(port, request)
            assert expected in answer.split(b"\r\n", 1)[0], (request[:60], answer[:200])
        # Authenticated, but naming a session that does not exist.
        from base64 import b64encode

        credentials = b64encode(f"admin:{TEST_PASSWORD}".encode()).decode()
        unknown = exchange(
            port,
            f"PLAY rtsp://127.0.0.1:{port}/live RTSP/1.0\r\nCSeq: 5\r\nSession: nope\r\n"
            f"Authorization: Basic {credentials}\r\n\r\n".encode(),
        )
        assert unknown.startswith(b"RTSP/1.0 454"), unknown[:200]
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, stderr[-1000:]
    assert stdout.count("video") >= 70, "the other client's stream was disturbed"
    assert "Traceback" not in daemon.log()


GSTREAMER_CLIENT = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst, GLib
Gst.init(None)
pipeline = Gst.parse_launch(
    f"rtspsrc location={sys.argv[1]} protocols=tcp latency=100 ! rtph264depay ! h264parse "
    "! avdec_h264 ! fakesink name=sink signal-handoffs=true"
)
frames = 0
loop = GLib.MainLoop()
def handoff(*_):
    global frames
    frames += 1
    if frames >= 30:
        GLib.idle_add(loop.quit)
pipeline.get_by_name("sink").connect("handoff", handoff)
def message(bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        print("error:", msg.parse_error()[0].message, file=sys.stderr)
        loop.quit()
pipeline.get_bus().add_signal_watch()
pipeline.get_bus().connect("message", message)
pipeline.set_state(Gst.State.PLAYING)
GLib.timeout_add_seconds(40, loop.quit)
loop.run()
pipeline.set_state(Gst.State.NULL)
print(frames)
"""


def test_gstreamer_rtspsrc_plays_it(start_daemon: StartDaemon, tmp_path: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.fail("Debian's python3 (with python3-gst-1.0) is needed")
    daemon = start_daemon(CONFIG)
    script = tmp_path / "client.py"
    script.write_text(GSTREAMER_CLIENT)
    result = subprocess.run(
        ["/usr/bin/python3", str(script), url(daemon)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "30", result.stderr[-2000:]
    # rtspsrc answers Digest the RFC 2069 way (no qop): accepted too.
    assert re.search(r"RTSP session \w+ for admin \(Digest\)", daemon.log())


def test_basic_and_a_token_work_where_a_client_offers_no_digest(
    start_daemon: StartDaemon,
) -> None:
    """By hand, as a client without Digest: Basic with a user's password, and a token
    by its name under Digest's rules."""
    from base64 import b64encode

    from peercam.auth import digest
    from tests.test_auth import token

    daemon = start_daemon(CONFIG)
    port = rtsp_port(daemon)
    stream = f"rtsp://127.0.0.1:{port}/live"

    def describe(authorization: str) -> bytes:
        return exchange(
            port,
            f"DESCRIBE {stream} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
            f"Authorization: {authorization}\r\n\r\n".encode(),
        )

    basic = b64encode(f"admin:{TEST_PASSWORD}".encode()).decode()
    assert describe(f"Basic {basic}").startswith(b"RTSP/1.0 200")
    secret = token(daemon, "nvr", "viewer")
    challenge = exchange(port, f"DESCRIBE {stream} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
    assert challenge.startswith(b"RTSP/1.0 401")
    nonce = re.search(rb'nonce="([^"]+)"', challenge)
    assert nonce is not None
    ha1 = digest.ha1("nvr", secret)
    response = digest.md5(f"{ha1}:{nonce[1].decode()}:{digest.md5(f'DESCRIBE:{stream}')}")
    header = (f'Digest username="nvr", realm="{digest.REALM}", nonce="{nonce[1].decode()}", '
              f'uri="{stream}", response="{response}"')  # fmt: skip
    assert describe(header).startswith(b"RTSP/1.0 200")
    forged = header.replace(response, "0" * 32)
    assert describe(forged).startswith(b"RTSP/1.0 401")


async def test_ten_rtsp_clients_and_five_webrtc_viewers_share_one_encode(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG + "[rtsp]\nmax_sessions_per_client = 16\n")
    port = rtsp_port(daemon)
    async with AsyncExitStack() as stack:
        viewers = [await stack.enter_async_context(WhepViewer(daemon.access)) for _ in range(5)]
        clients = [await stack.enter_async_context(RtspClient(port)) for _ in range(10)]
        await asyncio.gather(*(client.play() for client in clients))
        encoded_before = daemon.metric("peercam_encoded_frames_total", codec="h264")
        stamps = await asyncio.wait_for(
            asyncio.gather(*(client.frame_timestamps(31) for client in clients)), 30
        )
        await asyncio.gather(*(viewer.video_frames(20) for viewer in viewers))
        encoded = daemon.metric("peercam_encoded_frames_total", codec="h264") - encoded_before
        assert daemon.metric("peercam_encoder_running", codec="h264") == 1
    # Every client at the camera's rate, in stream time: none skipped frames.
    for client_stamps in stamps:
        seconds = ((client_stamps[-1] - client_stamps[0]) & 0xFFFFFFFF) / 90_000
        assert abs(30 / seconds - FPS) / FPS < 0.05, seconds
    # Fifteen consumers, one encode: frames were made once each, not per consumer
    # (30 frames' time passed for each client; at most a few more were encoded).
    assert encoded < 3 * 31, encoded


async def rtsp_churn(daemon: DaemonProcess, cycles: int) -> None:
    port = rtsp_port(daemon)
    for cycle in range(cycles):
        async with RtspClient(port) as client:
            await client.play()
            await client.frame_timestamps(1)
            if cycle % 2 == 0:
                status, _ = await client.request("TEARDOWN", client.url)
                assert status == 200
            # Odd cycles: it just vanishes mid-stream.


async def test_two_hundred_rtsp_clients_coming_and_vanishing_leave_nothing_behind(
    start_daemon: StartDaemon,
) -> None:
    cycles = 200  # half tear down politely, half vanish mid-stream
    # No linger: the camera and encoder stop with the last client, so what a cycle
    # leaves behind shows at once.
    daemon = start_daemon(CONFIG.replace("fps = 15", "fps = 15\nlinger_seconds = 0"))
    await rtsp_churn(daemon, 5)  # warm up: the encoder, the thread pool
    await wait_for_sessions(daemon, 0)
    # Settled: what is left running when nobody watches (a few seconds at most).
    baseline = await settled_footprint(daemon)
    await rtsp_churn(daemon, cycles)
    await wait_for_sessions(daemon, 0)
    after = await wait_for_footprint(daemon, baseline)
    assert after.tasks <= baseline.tasks, (baseline, after)
    assert after.fds <= baseline.fds + 2, (baseline, after)
    assert after.threads <= baseline.threads, (baseline, after)
    assert "Traceback" not in daemon.log()


async def wait_for_sessions(daemon: DaemonProcess, count: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while daemon.metric("peercam_rtsp_sessions") != count:
        assert time.monotonic() < deadline, daemon.metric("peercam_rtsp_sessions")
        await asyncio.sleep(0.2)


SMALL_STREAM = """
[camera]
source = "test"
size = "640x480"
fps = 15
lores_size = "320x240"
[video]
keyframe_interval = 1.0
sub_fps = 5
[talkback]
enabled = false
"""


async def test_the_small_stream_is_one_encode_at_its_own_size_and_rate(
    start_daemon: StartDaemon,
) -> None:
    """/live/sub, for an NVR's detection: the picture at camera.lores_size and
    video.sub_fps, encoded once however many take it, beside the main stream."""
    daemon = start_daemon(SMALL_STREAM)
    port = rtsp_port(daemon)
    async with AsyncExitStack() as stack:
        small = [await stack.enter_async_context(RtspClient(port, "/live/sub")) for _ in range(3)]
        main = [await stack.enter_async_context(RtspClient(port, "/live")) for _ in range(2)]
        await asyncio.gather(*(client.play() for client in small + main))
        encoded_before = daemon.metric("peercam_encoded_frames_total", codec="h264/sub")
        small_stamps, main_stamps = await asyncio.wait_for(
            asyncio.gather(
                asyncio.gather(*(client.frame_timestamps(11) for client in small)),
                asyncio.gather(*(client.frame_timestamps(31) for client in main)),
            ),
            30,
        )
        encoded = daemon.metric("peercam_encoded_frames_total", codec="h264/sub") - encoded_before
        assert daemon.metric("peercam_encoder_running", codec="h264/sub") == 1
        assert daemon.metric("peercam_encoder_running", codec="h264") == 1
    for stamps, rate in [(s, 5) for s in small_stamps] + [(s, FPS) for s in main_stamps]:
        seconds = ((stamps[-1] - stamps[0]) & 0xFFFFFFFF) / 90_000
        assert abs((len(stamps) - 1) / seconds - rate) / rate < 0.05, (rate, seconds)
    # Three clients, one encode: about 10 frames' time passed for each client.
    assert encoded < 2 * 11, encoded
    # Real clients decode it at its size; its audio choices are /live's.
    data = probe_frames(url(daemon, "/live/sub/opus"), "tcp", seconds=3)
    streams = {s["codec_type"]: s for s in data["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "opus"
    assert (int(streams["video"]["width"]), int(streams["video"]["height"])) == (320, 240)
    video = [f for f in data["frames"] if f["media_type"] == "video"]
    times = [float(f["pts_time"]) for f in video if "pts_time" in f]  # the first has none
    assert len(times) >= 12 and abs((len(times) - 1) / (times[-1] - times[0]) - 5) < 0.25, times
    assert "Traceback" not in daemon.log()


def test_no_small_stream_when_lores_size_is_off(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(SMALL_STREAM.replace('lores_size = "320x240"', 'lores_size = ""'))
    refused = subprocess.run(
        [ffprobe(), "-v", "error", "-rtsp_transport", "tcp", "-i", url(daemon, "/live/sub")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "404" in refused.stderr, refused.stderr[-500:]
    assert "Traceback" not in daemon.log()
