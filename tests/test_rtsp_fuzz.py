"""Fuzzing the RTSP server (rtsp/) with hypothesis while a client watches: requests
with mutated methods, URLs, CSeq, Session, Transport, Require and Authorization
headers, oversized headers, interleaved frames on any channel, and raw junk, each on
a connection of its own. Every answer must be an RTSP status below 500 (or the
connection closed), nothing may be logged as an unhandled error, and the watching
client's video must not stall. In the slow suite (`make test-all`)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import threading
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.access import TEST_PASSWORD
from tests.conftest import CAMERA_320, StartDaemon
from tests.rtsp_client import RtspClient
from tests.test_rtsp import rtsp_port

CONFIG = (
    CAMERA_320
    + """[talkback]
enabled = false
[auth]
login_failures_per_minute = 1000
login_failures_per_minute_total = 100000
[rtsp]
max_sessions = 1000
max_sessions_per_client = 1000
"""
)
AUTH = "Basic " + base64.b64encode(f"admin:{TEST_PASSWORD}".encode()).decode()

token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
junk = st.binary(max_size=400)
methods = st.sampled_from(
    ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER",
     "SET_PARAMETER", "ANNOUNCE", "RECORD", "REDIRECT"]
) | token  # fmt: skip
paths = st.sampled_from(
    ["/live", "/live/", "/live/trackID=0", "/live/trackID=1", "/live/trackID=2",
     "/live/opus/trackID=1", "/live/aac", "/live/noaudio", "/other", "*", ""]
) | token.map(lambda t: "/" + t)  # fmt: skip
header_values = st.sampled_from(
    ["RTP/AVP/TCP;unicast;interleaved=0-1", "RTP/AVP;unicast;client_port=5000-5001",
     "RTP/AVP;multicast", "RTP/AVP/TCP;interleaved=254-255", "RTP/AVP/TCP;interleaved=999-1",
     "www.onvif.org/ver20/backchannel", "-1", "0", "99999999999999999999", AUTH,
     "Digest username=\"admin\", nonce=\"x\", response=\"y\"", "Basic !!!"]
) | token  # fmt: skip
header_names = st.sampled_from(
    ["CSeq", "Session", "Transport", "Require", "Authorization", "Content-Length", "Range",
     "Accept", "User-Agent"]
) | token.filter(lambda t: ":" not in t)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["request", "request", "request", "interleaved", "junk"]))
    if kind == "junk":
        return draw(junk)
    if kind == "interleaved":
        channel = draw(st.integers(0, 255))
        payload = draw(junk)
        length = draw(st.sampled_from([len(payload), 0, 65535, len(payload) + 10]))
        return b"$" + bytes([channel]) + length.to_bytes(2, "big") + payload
    method = draw(methods)
    path = draw(paths)
    scheme = draw(st.sampled_from(["rtsp://127.0.0.1:PORT"] * 4 + ["rtsp://x", "http://x", ""]))
    version = draw(st.sampled_from(["RTSP/1.0"] * 6 + ["RTSP/2.0", "x"]))
    lines = [f"{method} {scheme}{path} {version}"]
    if draw(st.booleans()):
        lines.append(f"CSeq: {draw(st.integers(-5, 10**6))}")
    if draw(st.integers(0, 3)):
        lines.append(f"Authorization: {AUTH}")
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"{draw(header_names)}: {draw(header_values)}")
    if draw(st.integers(0, 20)) == 0:
        lines.append("X-Huge: " + "a" * draw(st.integers(4000, 70000)))
    body = draw(st.sampled_from([b"", b"v=0\r\n", b"\x00" * 10]))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace") + body


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(data.replace(b"PORT", str(port).encode()))
        # Done sending: a request cut short then ends at once instead of waiting out
        # the server's read timeout.
        connection.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while len(received) < 4096 and (chunk := connection.recv(4096)):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return received


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzzed_rtsp_gets_rtsp_errors_and_a_watching_client_keeps_streaming(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CONFIG)
    port = rtsp_port(daemon)
    statuses: Counter[str] = Counter()
    arrivals: list[float] = []
    stop = asyncio.Event()

    async def watch() -> None:
        async with RtspClient(port) as client:
            await client.play()
            while not stop.is_set():
                await client.frame_timestamps(1)
                arrivals.append(time.monotonic())

    loop = asyncio.new_event_loop()
    watcher = loop.create_task(watch())
    runner = threading.Thread(target=loop.run_until_complete, args=(watcher,), daemon=True)
    runner.start()
    time.sleep(2)
    started = time.monotonic()

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests())
    def one(data: bytes) -> None:
        answer = exchange(port, data)
        if not answer:
            statuses["closed"] += 1
            return
        assert answer.startswith(b"RTSP/1.0 "), answer[:200]
        status = answer[9:12].decode()
        statuses[status] += 1
        assert status != "500", (data[:300], answer[:300])

    one()
    loop.call_soon_threadsafe(stop.set)
    runner.join(10)
    gaps = [b - a for a, b in itertools.pairwise(arrivals) if a >= started]
    assert daemon.process.poll() is None, "the daemon died"
    log = daemon.log()
    assert "Traceback" not in log and "failed" not in log, log[-3000:]
    assert arrivals and arrivals[-1] > time.monotonic() - 15, "the watcher stopped getting video"
    assert max(gaps) < 1.0, f"the watching client's video stalled for {max(gaps):.2f} s"
    print(json.dumps(dict(statuses)))
