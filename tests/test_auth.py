"""Secure by default: nothing without a login, roles, login sessions, tokens, HTTPS,
the setup page, and refusals that say why."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from peercam.auth.store import CredentialStore
from peercam.config import build_config
from peercam.daemon import Daemon
from peercam.http.access import needed_role
from peercam.settings.config_file import ConfigFile
from tests.access import TEST_PASSWORD, Access, basic, bearer
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.whep_viewer import WhepViewer

TURN_SECRET = "turn-rest-shared-secret-do-not-leak"
TURN_PASSWORD = "static-turn-password-do-not-leak"
SECRETS_CONFIG = (
    SMALL
    + f"""
[[webrtc.ice_servers]]
urls = ["turn:127.0.0.1:3478"]
username = "camera"
credential = "{TURN_PASSWORD}"
[webrtc.turn_rest]
urls = ["turn:127.0.0.1:3479"]
secret = "{TURN_SECRET}"
"""
)


def peercam(daemon: DaemonProcess, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "peercam", args[0], "--state-dir", str(daemon.state_dir), *args[1:]],
        input=stdin, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def token(daemon: DaemonProcess, name: str, role: str, *more: str) -> str:
    return peercam(daemon, "token", "create", name, "--role", role, *more)


async def all_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the real daemon serves, from its own router."""
    config = build_config(
        {
            "camera": {"source": "test"},
            "server": {
                "state_dir": str(tmp_path / "routes"),
                "host": "127.0.0.1",
                "port": 0,
                "tls": False,
            },
            "rtsp": {"port": 0},
            "onvif": {"port": 0},
        }
    )
    # With a settings file, as `peercam run` has: the settings page's routes too.
    daemon = Daemon(config, ConfigFile(tmp_path / "routes.toml"))
    try:
        await daemon.start()
        router = daemon.parts.app.router
    finally:
        await daemon.stop()
    found = set()
    for route in router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method != "HEAD":
            found.add((route.method, path.replace("{id}", "x").replace("{name}", "viewer.js")))
    return sorted(found)


async def status_of(
    access: Access, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    async with (
        access.session(headers=headers or {}) as http,
        http.request(method, access.base + path, allow_redirects=False) as response,
    ):
        return response.status, dict(response.headers), await response.text()


async def test_every_route_but_login_health_and_assets_needs_a_login(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    routes = await all_routes(tmp_path)
    public = {(m, p) for m, p in routes if needed_role(m, p) is None}
    assert {p for m, p in public if m != "OPTIONS"} == {
        "/healthz", "/login", "/logout", "/ui/viewer.js",
        # The installable app's worker and manifest, and a ring's picture by its token.
        "/sw.js", "/manifest.webmanifest", "/push/ring/{token}",
        # The first run's page and its form (issue 23): it needs the setup code.
        "/setup", "/api/setup",
    }  # fmt: skip
    guarded = [(m, p) for m, p in routes if (m, p) not in public]
    assert len(guarded) >= 8, guarded  # the page, WHEP, API, events, metrics...
    for method, path in guarded:
        status, headers, body = await status_of(daemon.access, method, path)
        assert status == 401, (method, path, status, body)
        assert "Bearer" in headers["WWW-Authenticate"] and "Basic" in headers["WWW-Authenticate"]
        assert body == "log in first\n"
        # Wrong credentials of every kind are refused the same way.
        for wrong in (basic("admin", "nope-nope"), bearer("pct_0123456789ab_" + "x" * 43)):
            assert (await status_of(daemon.access, method, path, wrong))[0] in (401, 429)
    # A browser navigating to the page is sent to the login page, and back after it.
    status, headers, _ = await status_of(
        daemon.access, "GET", "/?codec=H264", {"Accept": "text/html"}
    )
    assert status == 303 and headers["Location"] == "/login?next=/?codec=H264"
    # Health stays public for monitors; it tells nothing about who watches.
    status, _, body = await status_of(daemon.access, "GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


async def test_viewer_token_watches_but_cannot_talk_ring_or_open_the_door(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()
    viewer = daemon.access.with_headers(bearer(token(daemon, "nvr", "viewer")))
    admin = daemon.access.with_headers(bearer(token(daemon, "automation", "admin")))
    async with WhepViewer(viewer) as watching:
        assert len(await watching.video_frames(5)) == 5
        assert watching.answer is not None
        session_id = watching.answer.location.rsplit("/", 1)[1]
        # /events works for a viewer (rings are shown), but every command is refused.
        async with (
            viewer.session() as http,
            http.ws_connect(daemon.base + "/events") as socket,
        ):
            assert (await socket.receive_json(timeout=10))["type"] == "state"
            for cmd in ("talk", "open-door", "answer", "decline", "hangup"):
                await socket.send_json({"cmd": cmd, "session": session_id})
                result = await socket.receive_json(timeout=10)
                assert result["ok"] is False and "admin role" in result["reason"], result
            status, _, body = await status_of(viewer, "POST", "/api/ring", viewer.headers)
            assert (status, body) == (403, "POST /api/ring needs the admin role\n")
            assert (await status_of(viewer, "GET", "/api/state", viewer.headers))[0] == 200
            # Nothing rang: the admin sees the bell idle.
            state = json.loads((await status_of(admin, "GET", "/api/state", admin.headers))[2])
            assert state["call"] == "idle"
        # Sessions of others are invisible to a viewer, and an admin may end them.
        async with WhepViewer(admin) as other:
            assert other.answer is not None
            path = other.answer.location
            assert (await status_of(viewer, "DELETE", path, viewer.headers))[0] == 404
            assert (await status_of(admin, "DELETE", path, admin.headers))[0] == 200
        # The viewer's own session is its to end.
        assert await watching.hang_up() == 200
    assert (await status_of(admin, "POST", "/api/ring", admin.headers))[0] == 202
    # Revoked tokens stop working at once, without a restart.
    peercam(daemon, "token", "revoke", "nvr")
    assert (await status_of(viewer, "GET", "/api/state", viewer.headers))[0] == 401
    listed = peercam(daemon, "token", "list")
    assert "automation" in listed and "nvr" not in listed


async def test_login_session_cookie_expiry_and_logout(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(SMALL + "[auth]\nsession_lifetime = 3\n")
    async with daemon.access.session(headers={}) as http:
        async with http.post(
            daemon.base + "/login", json={"user": "admin", "password": TEST_PASSWORD}
        ) as response:
            assert response.status == 200, await response.text()
            cookie = response.headers["Set-Cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=3"):
            assert attribute in cookie, cookie
        async with http.get(daemon.base + "/api/session") as response:
            assert await response.json() == {"user": "admin", "role": "admin", "notices": []}
        await asyncio.sleep(3.5)
        async with http.get(daemon.base + "/api/session") as response:
            assert response.status == 401  # expired on the server, whatever the browser keeps
        # Log in again, then out: the cookie is dead even if a copy of it is replayed.
        async with http.post(
            daemon.base + "/login", json={"user": "admin", "password": TEST_PASSWORD}
        ) as response:
            assert response.status == 200
        stolen = {c.key: c.value for c in http.cookie_jar}
        async with http.post(daemon.base + "/logout", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/login"
    async with daemon.access.session(headers={}) as replay:
        replay.cookie_jar.update_cookies(stolen)
        async with replay.get(daemon.base + "/api/session") as response:
            assert response.status == 401


async def test_changing_a_password_ends_that_users_login_sessions(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()
    peercam(daemon, "passwd", "--user", "family", "--stdin", stdin="family-password\n")
    async with daemon.access.session(headers={}) as http:
        async with http.post(
            daemon.base + "/login", json={"user": "family", "password": "family-password"}
        ) as response:
            assert await response.json() == {"user": "family", "role": "viewer"}
        async with http.get(daemon.base + "/api/session") as response:
            assert response.status == 200
        peercam(daemon, "passwd", "--user", "family", "--stdin", stdin="a-new-password\n")
        async with http.get(daemon.base + "/api/session") as response:
            assert response.status == 401
    assert "new password" not in (daemon.state_dir / "credentials.json").read_text()


async def test_failed_logins_are_rate_limited_per_client_and_logged(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(SMALL + "[auth]\nlogin_failures_per_minute = 3\n")
    wrong = {"user": "admin", "password": "guess-guess"}
    right = {"user": "admin", "password": TEST_PASSWORD}
    async with daemon.access.session(headers={}) as http:
        for _ in range(3):
            async with http.post(daemon.base + "/login", json=wrong) as response:
                assert response.status == 401
        # Now even the right password is refused from this address, with a wait.
        async with http.post(daemon.base + "/login", json=right) as response:
            assert response.status == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert "too many failed logins" in await response.text()
        # Basic and tokens count against the same budget.
        async with http.get(
            daemon.base + "/api/state", headers=basic("admin", TEST_PASSWORD)
        ) as response:
            assert response.status == 429
    # Another address is not locked out by this one.
    context = daemon.access.ssl_context()
    assert context is not None
    other = aiohttp.TCPConnector(ssl=context, local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=other) as http,
        http.post(daemon.base + "/login", json=right) as response,
    ):
        assert response.status == 200
    assert daemon.log().count("refused password for user 'admin' from 127.0.0.1") == 3
    assert "admin logged in from 127.0.0.2" in daemon.log()


async def test_cross_origin_requests_with_the_login_cookie_are_refused(
    daemon: DaemonProcess,
) -> None:
    evil = {"Origin": "https://evil.example"}
    async with daemon.access.session(headers={}) as http:
        async with http.post(
            daemon.base + "/login", json={"password": TEST_PASSWORD}, headers=evil
        ) as response:
            assert response.status == 403  # no login CSRF either
        async with http.post(daemon.base + "/login", json={"password": TEST_PASSWORD}) as r:
            assert r.status == 200
        sdp = {"Content-Type": "application/sdp"}
        async with http.post(
            daemon.base + "/whep", data="v=0\r\n", headers={**sdp, **evil}
        ) as response:
            assert (response.status, await response.text()) == (
                403,
                "cross-origin request refused\n",
            )
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(daemon.base + "/events", headers=evil)
        assert refused.value.status == 403
        # What a browser says of a form posted from another site, whatever the Origin.
        elsewhere = {"Sec-Fetch-Site": "cross-site", "Origin": "null"}
        async with http.post(
            daemon.base + "/whep", data="v=0\r\n", headers={**sdp, **elsewhere}
        ) as response:
            assert response.status == 403
        # The page's own origin is fine.
        same = {"Origin": daemon.base}
        async with http.ws_connect(daemon.base + "/events", headers=same) as socket:
            assert (await socket.receive_json(timeout=10))["type"] == "state"
    # A Bearer token is not ambient: a WHEP player on another site may use one.
    viewer = bearer(token(daemon, "player", "viewer"))
    async with daemon.access.session(headers={**viewer, **evil}) as http:
        async with http.post(daemon.base + "/whep", data="v=0\r\n", headers=sdp) as response:
            assert response.status == 400  # past the access check, to the SDP parser


async def test_without_a_password_only_the_setup_page_is_served(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(env={"PEERCAM_PASSWORD": ""})
    assert "no admin password is set" in daemon.log()
    page = {"Accept": "text/html"}
    for path in ("/", "/login"):
        status, _, body = await status_of(daemon.access, "GET", path, page)
        assert status == 503 and "peercam passwd" in body and "PEERCAM_PASSWORD" in body
    status, _, body = await status_of(daemon.access, "POST", "/whep", {})
    assert status == 503 and "peercam passwd" in body
    assert (await status_of(daemon.access, "GET", "/healthz"))[0] == 200
    # Set on the command line, it takes effect without a restart.
    peercam(daemon, "passwd", "--stdin", stdin="first-password\n")
    status, headers, _ = await status_of(daemon.access, "GET", "/", page)
    assert status == 303 and headers["Location"].startswith("/login")
    admin = basic("admin", "first-password")
    assert (await status_of(daemon.access, "GET", "/api/state", admin))[0] == 200


def test_a_short_password_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "run", "--source", "test", "--port", "0",
         "--http-port", "0", "--state-dir", str(tmp_path)],
        env={**os.environ, "PEERCAM_PASSWORD": "short"}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "PEERCAM_PASSWORD: a password needs at least 8 characters" in result.stderr


async def test_https_by_default_with_a_private_key_and_a_redirect(
    daemon: DaemonProcess,
) -> None:
    assert daemon.base.startswith("https://")
    # Access trusts only this daemon's certificate and checks the host name, so a
    # request that succeeds proves the certificate names 127.0.0.1.
    assert json.loads(daemon.get("/api/state"))["call"] == "idle"
    key = daemon.state_dir / "tls-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((daemon.state_dir / "credentials.json").stat().st_mode) == 0o600
    assert daemon.redirect_url is not None
    async with (
        aiohttp.ClientSession() as http,
        http.post(daemon.redirect_url + "whep?x=1", allow_redirects=False) as response,
    ):
        assert response.status == 308  # the method survives: a WHEP POST follows it
        assert response.headers["Location"] == f"{daemon.base}/whep?x=1"


async def test_turn_credentials_need_a_login_and_never_appear_in_the_page(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(SECRETS_CONFIG)
    status, headers, _ = await status_of(daemon.access, "OPTIONS", "/whep")
    assert status == 204 and "Link" not in headers  # a preflight gets no TURN secret
    async with (
        daemon.access.session() as http,
        http.options(daemon.base + "/whep") as response,
    ):
        links = response.headers.getall("Link")
    assert any(TURN_PASSWORD in link for link in links)  # for the logged-in viewer
    assert not any(TURN_SECRET in link for link in links)  # the REST secret never leaves
    async with daemon.access.session() as http:
        bodies = []
        for path in ("/", "/login", "/ui/viewer.js", "/ui/whep.js", "/ui/doorbell.js"):
            async with http.get(daemon.base + path) as response:
                assert response.status == 200, path
                bodies.append(await response.text())
    for body in bodies:
        assert TURN_SECRET not in body and TURN_PASSWORD not in body
        assert TEST_PASSWORD not in body


def test_the_credentials_file_keeps_only_hashes(tmp_path: Path) -> None:
    """Passwords and admin tokens only as hashes; a viewer token's secret readable,
    for ONVIF's UsernameToken digest (auth/store.py says why)."""
    store = CredentialStore(tmp_path)
    store.set_password("admin", "the-admin-password")
    admin_token = store.create_token("automation", "admin", lifetime_days=None)
    presented = store.create_token("nvr", "viewer", lifetime_days=1 / 86400)
    text = (tmp_path / "credentials.json").read_text()
    assert "the-admin-password" not in text and admin_token not in text
    assert text.count(presented) == 1 and '"readable_secret": "' + presented in text
    assert "$argon2id$" in text
    again = CredentialStore(tmp_path)  # what another process sees
    found = again.token_for(presented)
    assert found is not None and found.role == "viewer"
    assert again.token_for(presented[:-1] + ("A" if presented[-1] != "A" else "B")) is None
    time.sleep(1.1)
    assert again.token_for(presented) is None  # expired


def test_a_viewer_logs_in_on_the_page_watches_without_admin_controls_and_logs_out(
    start_daemon: StartDaemon,
) -> None:
    from tests.browser import chromium, open_page, wait_for_stats, wait_js

    daemon = start_daemon()
    peercam(daemon, "passwd", "--user", "family", "--stdin", stdin="family-password\n")
    with chromium() as browser:
        page = browser.new_page()
        page.goto(daemon.base + "/")
        assert page.url.endswith("/login?next=/")
        page.fill("#user", "family")
        page.fill("#password", "wrong-password")
        with page.expect_navigation():
            page.click("#submit")
        assert page.text_content("#error") == "Wrong user name or password."
        open_page(page, daemon.base, "/", user="family", password="family-password")
        wait_for_stats(page, lambda s: s["framesDecoded"] > 10)
        wait_js(page, "document.body.dataset.role === 'viewer'")
        for control in ("#talk", "#open-door"):
            assert not page.is_visible(control), control
        assert page.is_visible("#snapshot")
        with page.expect_navigation():
            page.click("#logout")
        assert page.url.endswith("/login")
        page.goto(daemon.base + "/")
        assert "/login" in page.url  # the session is gone on the server too
