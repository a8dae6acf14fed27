"""What an attacker on the LAN found (issue 17), each refused cleanly: malformed requests
that filled the log, secrets in the log, an open redirect after login, a cross-site
WebSocket let through by a strangely spelled Upgrade header, a clip id too long for the
file system, missing security headers, what /healthz and Server told the public, files
others could read, and CBC suites on TLS 1.2."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import stat
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import pytest

from tests.access import TEST_PASSWORD, basic, bearer
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_auth import status_of, token
from tests.test_clips_page import RECORDING, record_now, wait_for_clip

SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def raw(daemon: DaemonProcess, request: bytes, responses: int = 1) -> bytes:
    """Send bytes as they are over TLS; what the daemon answers, up to the end of the
    `responses`-th response (or until it closes the connection or goes quiet)."""
    context = daemon.access.ssl_context()
    assert context is not None
    with (
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        answer = b""
        try:
            while not _complete(answer, responses) and (chunk := tls.recv(65536)):
                answer += chunk
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
    return answer


def _complete(answer: bytes, responses: int) -> bool:
    rest = answer
    for _ in range(responses):
        head, separator, rest = rest.partition(b"\r\n\r\n")
        if not separator:
            return False
        status, headers = head_of(head)
        if status == 101:
            return True
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return False
        rest = rest[length:]
    return True


def head_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers of the first response in `answer` (names lowercased)."""
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def assert_security_headers(headers: dict[str, str], what: object) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, expected in SECURITY_HEADERS.items():
        assert expected in lowered.get(name.lower(), ""), (what, name, headers)
    server = lowered.get("server", "")
    assert "python" not in server.lower() and "aiohttp" not in server.lower(), (what, server)


def malformed_requests(secret: str) -> dict[str, bytes]:
    return {
        "request line over 8190 bytes": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "more than 128 headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: y\r\n" % i for i in range(200))
        + b"\r\n",
        "control character in a header": b"GET /api/state HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {secret}\x01\r\n\r\n".encode(),
        "lowercase method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
        # aiohttp logs a bad method quietly on a connection's first request only.
        "lowercase method after a good request": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    }


def test_malformed_requests_get_a_plain_400_and_one_quiet_log_line_each(
    daemon: DaemonProcess,
) -> None:
    rounds = 5
    before = len(daemon.log().splitlines())
    for _ in range(rounds):
        for kind, request in malformed_requests("not-a-real-token").items():
            answer = raw(daemon, request, responses=request.count(b"HTTP/1.1\r\n"))
            last = answer[answer.rfind(b"HTTP/1.") :]
            status, headers = head_of(last)
            assert status == 400, (kind, answer[:300])
            assert_security_headers(headers, kind)
            body = last.split(b"\r\n\r\n", 1)[1]
            assert len(body.splitlines()) == 1, (kind, body)
    time.sleep(0.3)
    added = daemon.log().splitlines()[before:]
    assert "Traceback" not in "\n".join(added)
    assert not [line for line in added if " ERROR " in line or " WARNING " in line], added
    assert len(added) <= rounds * len(malformed_requests("")), added


async def test_no_password_token_or_cookie_reaches_the_log(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    admin_token = token(daemon, "automation", "admin")
    cookie = await login_cookie(daemon)
    typed_in_the_wrong_field = "my-secret-password-typed-as-user"
    no_colon = base64.b64encode(typed_in_the_wrong_field.encode()).decode()
    for wrong in ({"Authorization": f"Basic {no_colon}"}, basic(typed_in_the_wrong_field, "x")):
        assert (await status_of(daemon.access, "GET", "/api/state", wrong))[0] == 401
    form = f"user={typed_in_the_wrong_field}&password=nope".encode()
    login = (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(form), form)
    )
    assert head_of(raw(daemon, login))[0] == 303
    for malformed in (
        f"GET /api/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin_token}\x01\r\n\r\n",
        f"GET /api/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin_token}\x7f\r\n\r\n",
        f"GET /api/state HTTP/1.1\r\nHost: x\r\nCookie: peercam_session={cookie}\x01\r\n\r\n",
        f"GET /api/state HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {no_colon}\x01\r\n\r\n",
        f"GET /api/state HTTP/1.1\r\nHost: x\r\nX-Long: {'a' * 9000} {admin_token}\r\n\r\n",
    ):
        answer = raw(daemon, malformed.encode())
        assert head_of(answer)[0] == 400
        # Nor is it echoed back (to a proxy's log, say).
        assert admin_token.encode() not in answer and cookie.encode() not in answer
    await asyncio.sleep(0.3)
    log = daemon.log()
    for secret in (admin_token, cookie, TEST_PASSWORD, typed_in_the_wrong_field, no_colon):
        assert secret not in log, secret
    assert "refused" in log  # the refusals are still logged, without what was presented


async def test_after_login_only_a_path_on_this_site(daemon: DaemonProcess) -> None:
    dangerous = [
        "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
        "/\t\t/evil.example", "//evil.example", "/\\evil.example", "\\/evil.example",
        "https://evil.example/", "/\x00/evil.example", "/\u3000/evil.example",
        " //evil.example", "/\x7f/evil.example",
    ]  # fmt: skip
    async with daemon.access.session(headers={}) as http:
        for target in [*dangerous, "/?codec=H264"]:
            fields = {"user": "admin", "password": TEST_PASSWORD, "next": target}
            data = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
            async with http.post(
                daemon.base + "/login",
                data=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
            ) as response:
                assert response.status == 303, target
                location = response.headers["Location"]
                assert_security_headers(dict(response.headers), target)
            # Whatever a browser strips from it, it stays on this site.
            cleaned = "".join(c for c in location if c not in "\t\n\r").strip()
            resolved = urlsplit(urljoin(daemon.base + "/", cleaned.replace("\\", "/")))
            assert resolved.netloc == urlsplit(daemon.base).netloc, (target, location)
            assert location == ("/?codec=H264" if target == "/?codec=H264" else "/"), target
        # Wrong passwords go back to the login page, carrying only a safe next.
        for target in dangerous:
            data = f"user=admin&password=wrong-wrong&next={quote(target, safe='')}"
            async with http.post(
                daemon.base + "/login",
                data=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
            ) as response:
                location = response.headers["Location"]
                # Wrong, then throttled: either way back to the page, not elsewhere.
                assert location.startswith("/login?error=") and location.endswith("&next=/")


def websocket_status(daemon: DaemonProcess, cookie: str, *headers: tuple[str, str]) -> int:
    """The status of a WebSocket handshake for /events with the login cookie."""
    lines = [
        "GET /events HTTP/1.1",
        f"Host: 127.0.0.1:{daemon.port}",
        f"Cookie: peercam_session={cookie}",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return head_of(raw(daemon, ("\r\n".join(lines) + "\r\n\r\n").encode()))[0]


async def login_cookie(daemon: DaemonProcess) -> str:
    async with (
        daemon.access.session(headers={}) as http,
        http.post(
            daemon.base + "/login", json={"user": "admin", "password": TEST_PASSWORD}
        ) as response,
    ):
        assert response.status == 200
        return {c.key: c.value for c in http.cookie_jar}["peercam_session"]


async def test_cross_site_websockets_are_refused_however_the_upgrade_is_spelled(
    daemon: DaemonProcess,
) -> None:
    cookie = await login_cookie(daemon)
    own = f"https://127.0.0.1:{daemon.port}"
    websocket = ("Upgrade", "websocket")
    # The page's own origin is upgraded: the check below is not just refusing everything.
    assert websocket_status(daemon, cookie, websocket, ("Origin", own)) == 101
    cross = [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")]
    for spelling in ("websocket", "websocket\u00a0", "websocket\u0085", "websocket\u3000",
                     "WebSocket", " websocket", "websocket, foo"):  # fmt: skip
        assert websocket_status(daemon, cookie, ("Upgrade", spelling), *cross) == 403, spelling
    for origins in (
        [f"http://127.0.0.1:{daemon.port}"],  # another scheme
        ["https://127.0.0.1:1"],  # another port
        ["https://127.0.0.1"],  # the default port is another port
        ["null"],  # a sandboxed frame, a file: page
        [own, "https://evil.example"],
        [own, own],  # two Origins: which to believe?
        [f"{own}, https://evil.example"],
        [f"{own}/"],
    ):
        headers = [("Origin", origin) for origin in origins]
        assert websocket_status(daemon, cookie, websocket, *headers) == 403, origins
    # A page loaded under the former no-referrer policy posts with Origin: null.
    async with daemon.access.session(headers={}) as http:
        http.cookie_jar.update_cookies({"peercam_session": cookie})
        same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        async with http.post(daemon.base + "/api/ring", headers=same) as response:
            assert response.status == 202
        async with http.post(daemon.base + "/api/ring", headers={"Origin": "null"}) as response:
            assert response.status == 403
        async with http.post(
            daemon.base + "/api/ring", headers={"Origin": own.replace("https", "http")}
        ) as response:
            assert response.status == 403


async def test_a_clip_id_too_long_for_a_file_name_is_a_404(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(RECORDING)
    long_id = "20260101T000000-" + "a" * 250 + "-abcdef"
    for method, path in (
        ("GET", f"/api/clips/{long_id}"),
        ("GET", f"/api/clips/{long_id}/picture.jpg"),
        ("DELETE", f"/api/clips/{long_id}"),
        ("GET", "/api/clips/20260101T000000-ring-abcdef%0A"),
    ):
        status, _, body = await status_of(daemon.access, method, path, daemon.access.headers)
        assert status == 404, (method, path, status, body)
        assert len(body) < 200 and body.count("\n") <= 1, body
    assert "Traceback" not in daemon.log() and "File name too long" not in daemon.log()


async def test_security_headers_on_redirects_refusals_and_parser_errors(
    daemon: DaemonProcess,
) -> None:
    page = {"Accept": "text/html"}
    status, headers, _ = await status_of(daemon.access, "GET", "/", page)
    assert status == 303 and headers["Location"] == "/login?next=/"
    assert_security_headers(headers, "303 to /login")
    async with daemon.access.session(headers={}) as http:
        form = {"user": "admin", "password": TEST_PASSWORD, "next": "/"}
        async with http.post(daemon.base + "/login", data=form, allow_redirects=False) as response:
            assert response.status == 303
            assert_security_headers(dict(response.headers), "303 after login")
        async with http.post(daemon.base + "/logout", allow_redirects=False) as response:
            assert response.status == 303
            assert_security_headers(dict(response.headers), "303 after logout")
        async with http.post(
            daemon.base + "/login", data={**form, "password": "wrong-wrong"}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert_security_headers(dict(response.headers), "303 after a wrong password")
        async with http.ws_connect(
            daemon.base + "/events", headers=basic("admin", TEST_PASSWORD)
        ) as socket_:
            assert (await socket_.receive_json(timeout=10))["type"] == "state"
    for what, status_expected, (method, path, headers_) in [
        ("401", 401, ("GET", "/api/state", {})),
        ("404", 404, ("GET", "/nope", daemon.access.headers)),
        ("405", 405, ("PUT", "/api/state", daemon.access.headers)),
    ]:
        status, headers, _ = await status_of(daemon.access, method, path, headers_)
        assert status == status_expected, what
        assert_security_headers(headers, what)
    status, headers = head_of(raw(daemon, b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01: y\r\n\r\n"))
    assert status == 400
    assert_security_headers(headers, "the parser's 400")
    # The plain-HTTP port's redirects name no software either.
    assert daemon.redirect_url is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(daemon.redirect_url, allow_redirects=False) as response,
    ):
        assert response.status == 308
        assert "Python" not in response.headers.get("Server", "")


async def test_healthz_tells_the_public_only_that_the_camera_lives(
    daemon: DaemonProcess,
) -> None:
    status, headers, body = await status_of(daemon.access, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert "Python" not in headers.get("Server", "") and "aiohttp" not in headers.get("Server", "")
    # Viewers and uptime are for the logged-in: in /metrics.
    assert daemon.metric("peercam_viewers") == 0
    assert daemon.metric("peercam_uptime_seconds") > 0


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_everything_in_the_state_directory_is_owner_only_under_umask_022(
    start_daemon: StartDaemon,
) -> None:
    with umask(0o022):  # the daemon inherits it, as it would outside systemd
        daemon = start_daemon(RECORDING)
        assert token(daemon, "nvr", "viewer")
        # The recorder needs the encoder's first keyframe; on a loaded machine that
        # can take longer than record_now waits.
        deadline = time.monotonic() + 30
        while True:
            try:
                clip_id = record_now(daemon)
                break
            except urllib.error.HTTPError as error:
                if error.code != 503 or time.monotonic() > deadline:
                    raise
        wait_for_clip(daemon, clip_id, timeout=30)
    found = list(daemon.state_dir.rglob("*"))
    assert any(p.suffix == ".mp4" for p in found) and any(p.suffix == ".jpg" for p in found)
    for path in [daemon.state_dir, *found]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(daemon.state_dir.parent)} is {mode:o}"


def test_tls_1_2_offers_only_aead_suites(daemon: DaemonProcess) -> None:
    def handshake(ciphers: str) -> str:
        context = ssl.create_default_context(cafile=str(daemon.state_dir / "tls-cert.pem"))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        with (
            socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as plain,
            context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
        ):
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[0]

    for cbc in (
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",
        "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",
    ):
        with pytest.raises(ssl.SSLError):
            handshake(cbc)
    assert "GCM" in handshake("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "CHACHA20" in handshake("ECDHE-ECDSA-CHACHA20-POLY1305")


async def test_bad_basic_and_bearer_credentials_are_still_refused_and_counted(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(SMALL + "[auth]\nlogin_failures_per_minute = 3\n")
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"no-colon-here").decode()}
    for headers in (no_colon, basic("nobody", "guess-guess"), bearer("pct_x_" + "y" * 43)):
        assert (await status_of(daemon.access, "GET", "/api/state", headers))[0] == 401
    assert (await status_of(daemon.access, "GET", "/api/state", daemon.access.headers))[0] == 429
    log = daemon.log()
    assert "refused a malformed Basic credential from 127.0.0.1" in log
    assert "refused password for an unknown user from 127.0.0.1" in log
    assert "nobody" not in log and "no-colon-here" not in log
