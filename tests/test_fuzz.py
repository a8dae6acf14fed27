"""Fuzzing the daemon's inputs with hypothesis, over real HTTPS, while a viewer
watches: SDP offers (mutated real offers and junk), trickle fragments, login forms,
API calls, headers and push-channel commands. Every answer must be below 500, nothing
may be logged as an unhandled error, and the viewer's video must not stall.

`make test` runs a sample (FUZZ_SAMPLE examples); `make test-all` runs 10,000.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.access import Access
from tests.conftest import MANY_SESSIONS, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.watching_viewer import WatchingViewer

FUZZ_SAMPLE = 400
CONFIG = (
    MANY_SESSIONS
    + "connect_timeout = 2\n[auth]\nlogin_failures_per_minute = 1000\n"
    + "login_failures_per_minute_total = 100000\n"
)

# A real browser-shaped offer, to mutate: the daemon must survive every variation.
OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=ice-options:trickle\r\na=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\na=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n"
    "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n"
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\na=setup:actpass\r\na=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
LINES = OFFER.split("\r\n")

junk = st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1"))


@st.composite
def mutated_offer(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "junk", "number", "swap", "cut"]))
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "junk":
            lines[index] = draw(junk)
        elif action == "number":  # numbers where the parser int()s something
            value = draw(st.sampled_from(["-1", "99999999999999999999", "", "x", "0", "128"]))
            head, _, tail = lines[index].partition(" ")
            lines[index] = f"{head} {value} {tail}"
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
    separator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return separator.join(lines)


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def sdp_request(body: str, content_type: str) -> Request:
    encoded = body.encode("utf-8", "surrogatepass")
    return Request("POST", "/whep", encoded, {"Content-Type": content_type})


content_types = st.sampled_from(
    ["application/sdp", "application/sdp; charset=utf-8", "text/plain", "", "application/json"]
)
candidate_lines = st.builds(
    lambda f, c, p, ip, port, t: f"a=candidate:{f} {c} {p} 2122260223 {ip} {port} typ {t}",
    st.text(max_size=8), st.sampled_from(["1", "2", "x", "-1"]),
    st.sampled_from(["udp", "tcp", "UDP", ""]),
    st.sampled_from(["127.0.0.1", "::1", "x.local", "999.1.1.1", ""]),
    st.sampled_from(["9", "0", "70000", "-3", "x"]),
    st.sampled_from(["host", "srflx", "relay", "", "nonsense"]),
)  # fmt: skip


def requests(session_path: str) -> st.SearchStrategy[Request]:
    other_session = st.sampled_from([session_path, "/whep/sessions/nope"]) | st.text(
        min_size=1, max_size=40
    ).map(lambda s: "/whep/sessions/" + quote(s, safe=""))
    sdpfrag = st.lists(candidate_lines | junk | st.just("a=ice-ufrag:abcd"), max_size=6).map(
        "\r\n".join
    )
    login_json = st.dictionaries(
        st.sampled_from(["user", "password", "next", "x"]),
        st.none() | st.integers() | st.text(max_size=80) | st.lists(st.integers(), max_size=3),
    ).map(lambda d: json.dumps(d).encode())
    return st.one_of(
        st.builds(sdp_request, mutated_offer(), content_types),
        st.builds(sdp_request, junk, content_types),
        st.builds(
            lambda path, body, ctype: Request(
                "PATCH", path, body.encode("utf-8", "surrogatepass"), {"Content-Type": ctype}
            ),
            other_session,
            sdpfrag,
            st.sampled_from(["application/trickle-ice-sdpfrag", "application/sdp", ""]),
        ),
        # DELETE of anything but the watching viewer's own session.
        st.builds(
            lambda s: Request("DELETE", "/whep/sessions/" + quote(s, safe="")),
            st.text(min_size=1, max_size=40).filter(lambda s: s not in session_path),
        ),
        st.builds(
            lambda body: Request("POST", "/login", body, {"Content-Type": "application/json"}),
            login_json | st.binary(max_size=200),
        ),
        st.builds(
            lambda body: Request(
                "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
            ),
            st.binary(max_size=300),
        ),
        st.builds(
            lambda method, path: Request(method, path),
            st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "HEAD"]),
            st.sampled_from(["/api/state", "/api/session", "/healthz", "/ui/x", "/whep", "/"])
            | st.text(max_size=60).map(lambda s: "/" + quote(s, safe="/?=&")),
        ),
    )


def commands(session_id: str) -> st.SearchStrategy[str]:
    """Push-channel messages: commands with odd fields, and JSON that is not one."""
    names = st.sampled_from(
        ["answer", "decline", "hangup", "talk", "untalk", "open-door", "reboot", ""]
    )
    session = st.sampled_from([session_id, "", "x" * 500]) | st.none() | st.integers()
    command = st.fixed_dictionaries({"cmd": names | st.integers(), "session": session})
    anything = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    )
    return st.one_of(command.map(json.dumps), anything.map(json.dumps), junk)


async def send_commands(access: Access, messages: list[str]) -> list[dict[str, object]]:
    """All `messages` down one push channel; the answer to each."""
    answers = []
    async with access.session() as http, http.ws_connect(access.base + "/events") as socket:
        await socket.receive_json(timeout=10)  # the call state on connect
        for message in messages:
            await socket.send_str(message)
            while True:
                answer = await socket.receive_json(timeout=10)
                if answer.get("type") == "result":
                    answers.append(answer)
                    break
    return answers


def send(access: Access, context: ssl.SSLContext | None, request: Request) -> int:
    headers = {**access.headers, **request.headers}
    outgoing = urllib.request.Request(
        access.base + request.path,
        data=request.body if request.method not in ("GET", "HEAD", "OPTIONS") else None,
        method=request.method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=15, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def fuzz(daemon: DaemonProcess, examples: int) -> dict[str, object]:
    statuses: dict[int, int] = {}
    context = daemon.access.ssl_context()
    with WatchingViewer(daemon.access) as watcher:
        started = time.monotonic()

        session_id = watcher.session_path.rsplit("/", 1)[1]
        messages: list[str] = []

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(requests(watcher.session_path), commands(session_id))
        def one(request: Request, message: str) -> None:
            status = send(daemon.access, context, request)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (status, request)
            messages.append(message)

        one()
        answers = asyncio.run(send_commands(daemon.access, messages))
        assert len(answers) == len(messages)
        refused = sum(1 for a in answers if a.get("ok") is False and a.get("reason"))
        elapsed = time.monotonic() - started
        gap = watcher.longest_gap(started)
        frames = len([t for t in watcher.arrivals if t >= started])
    assert daemon.process.poll() is None, "the daemon died"
    log = daemon.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    # 15 fps: a gap of a second means the viewer's stream stalled under the fuzzing.
    assert gap < 1.0, f"the watching viewer's video stalled for {gap:.2f} s"
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(elapsed, 1),
        "viewer_frames": frames,
        "push_commands": len(messages),
        "push_refused": refused,
        "longest_gap_s": round(gap, 3),
    }


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(FUZZ_SAMPLE, marks=pytest.mark.timeout(300)),
        pytest.param(10_000, marks=[pytest.mark.slow, pytest.mark.timeout(3600)]),
    ],
)
def test_fuzzed_requests_get_4xx_and_the_viewer_keeps_streaming(
    start_daemon: StartDaemon, examples: int
) -> None:
    daemon = start_daemon(CONFIG)
    figures = fuzz(daemon, examples)
    print(json.dumps(figures))
    # Hypothesis may stop a little short when it finds nothing new to try.
    assert isinstance(figures["requests"], int) and figures["requests"] >= 0.9 * examples
