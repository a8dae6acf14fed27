"""First run in the browser (issue 23): with no admin yet, the daemon makes a one-time
setup code, says it on its console and in `peercam check`, and whoever enters it on
the page sets the admin password, once. Wrong codes count as failed logins."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from peercam.auth.setup_code import ALPHABET, SetupCode
from peercam.config import load_config
from peercam.service.addresses import lan_address
from tests.access import Access, basic
from tests.browser import chromium, wait_for_stats, wait_js
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess

NO_PASSWORD = {"PEERCAM_PASSWORD": ""}
CODE = re.compile(rf"setup code ([{ALPHABET}]{{5}}-[{ALPHABET}]{{5}})")
NEW_PASSWORD = "a-long-admin-password"
PAGE = {"Accept": "text/html"}


def code_of(daemon: DaemonProcess) -> str:
    return daemon.logged(CODE.pattern)[1]


async def post_setup(
    access: Access, body: object, local_address: str | None = None, **headers: str
) -> tuple[int, dict[str, str], str, aiohttp.CookieJar]:
    """POST /api/setup as JSON from `local_address` (another client than the test's)."""
    context = access.ssl_context()
    connector = aiohttp.TCPConnector(
        ssl=context if context is not None else True,
        local_addr=(local_address, 0) if local_address else None,
    )
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http,
        http.post(
            access.base + "/api/setup", json=body, headers=headers, allow_redirects=False
        ) as response,
    ):
        return response.status, dict(response.headers), await response.text(), jar


async def test_the_setup_code_sets_the_admin_password_once(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(env=NO_PASSWORD)
    code = code_of(daemon)
    stored = SetupCode(daemon.state_dir)
    assert stored.path.stat().st_mode & 0o077 == 0  # the service's alone
    assert "no admin password is set" in daemon.log()
    # Every page is the setup page; /setup itself answers 200.
    async with daemon.access.session(headers=PAGE) as http:
        async with http.get(daemon.base + "/", allow_redirects=False) as response:
            assert response.status == 503 and "setup code" in await response.text()
        async with http.get(daemon.base + "/setup", allow_redirects=False) as response:
            assert response.status == 200 and 'id="code"' in await response.text()
    # `peercam check` tells it to whoever has a shell on the camera.
    check = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "peercam", "check", "--state-dir", str(daemon.state_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert f"setup code {code}" in check.stdout, check.stdout + check.stderr

    access = daemon.access
    # A wrong code: refused beside its field, counted as a failed login.
    status, _, body, _ = await post_setup(access, {"code": "AAAAA-AAAAA", "password": NEW_PASSWORD})
    assert status == 403 and json.loads(body)["field"] == "code"
    assert "refused a wrong setup code from 127.0.0.1" in daemon.log()
    # From another page of another site: refused before the code is even looked at.
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    status, *_ = await post_setup(access, {"code": code, "password": NEW_PASSWORD}, **evil)
    assert status == 403
    # The right code with a short password, or two that differ: said why, code kept.
    status, _, body, _ = await post_setup(access, {"code": code, "password": "short"})
    assert status == 400 and json.loads(body)["field"] == "password"
    differ = {"code": code, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD + "x"}
    status, _, body, _ = await post_setup(access, differ)
    assert status == 400 and json.loads(body)["field"] == "repeat"
    assert stored.current() == code.replace("-", "")

    # Typed in lower case without the dash, twice at once: one admin, logged in by it.
    typed = code.replace("-", "").lower()
    passwords = (NEW_PASSWORD, "other-password-1")
    answers = await asyncio.gather(
        *(post_setup(access, {"code": typed, "password": p}) for p in passwords)
    )
    assert sorted(a[0] for a in answers) == [200, 409], [a[:3:2] for a in answers]
    status, _, body, jar = next(a for a in answers if a[0] == 200)
    assert json.loads(body) == {"user": "admin", "role": "admin"}
    winner = passwords[0] if answers[0][0] == 200 else passwords[1]
    assert stored.current() is None and not stored.path.exists()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=access.ssl_context() or True), cookie_jar=jar
    ) as http:
        async with http.get(access.base + "/api/session") as response:
            assert response.status == 200 and (await response.json())["role"] == "admin"
    # The password works; the code works no more, nor does the page.
    admin = access.with_headers(basic("admin", winner))
    assert json.loads(admin.urlopen("/api/session"))["user"] == "admin"
    status, _, body, _ = await post_setup(access, {"code": code, "password": "third-password"})
    assert status == 409 and "already has an admin" in body
    async with access.session(headers=PAGE) as http:
        async with http.get(access.base + "/setup", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
    # After a restart: no code is made, none is logged.
    daemon.terminate()
    again = DaemonProcess(daemon.log_path.parent, SMALL, env=NO_PASSWORD)
    try:
        assert not CODE.search(again.log()) and not stored.path.exists()
    finally:
        again.terminate()


async def test_guessing_the_code_is_throttled_and_the_owner_still_gets_in(
    start_daemon: StartDaemon,
) -> None:
    """A guesser at one address is held to the login's limit; the owner at another
    sets the password meanwhile; the code survives a restart until used."""
    daemon = start_daemon(SMALL + "[auth]\nlogin_failures_per_minute = 3\n", env=NO_PASSWORD)
    code = code_of(daemon)
    guess = {"code": "BBBBB-BBBBB", "password": NEW_PASSWORD}
    statuses = [(await post_setup(daemon.access, guess, "127.0.0.2"))[0] for _ in range(4)]
    assert statuses == [403, 403, 403, 429], statuses
    # Even the right code, from the guesser's address, waits.
    status, headers, body, _ = await post_setup(
        daemon.access, {"code": code, "password": NEW_PASSWORD}, "127.0.0.2"
    )
    assert status == 429 and int(headers["Retry-After"]) >= 1, body
    # The same code after a restart (a card read before it still works).
    daemon.terminate()
    again = DaemonProcess(daemon.log_path.parent, SMALL, env=NO_PASSWORD)
    try:
        assert CODE.search(again.log())[1] == code  # type: ignore[index]
        status, *_ = await post_setup(again.access, {"code": code, "password": NEW_PASSWORD})
        assert status == 200
    finally:
        again.terminate()


def test_a_code_is_ten_characters_easy_to_read(tmp_path: Path) -> None:
    codes = {SetupCode(tmp_path / str(n)).ensure() for n in range(50)}
    assert len(codes) == 50
    for code in codes:
        assert len(code) == 10 and not set(code) & set("0O1IL")


def test_chromium_sets_up_a_fresh_camera(start_daemon: StartDaemon) -> None:
    """In the browser, as an owner does: a guesser at another address (the camera's
    IPv6 loopback) is refused and then throttled; the owner's right code sets the
    password and lands on the live page, logged in; the setup page is gone."""
    # Dual-stack: the browser reaches it as 127.0.0.1 and as ::1, two addresses.
    daemon = start_daemon(
        SMALL + "[auth]\nlogin_failures_per_minute = 2\n", "--host", "::", env=NO_PASSWORD
    )
    code = code_of(daemon)
    guesser_base = f"https://[::1]:{daemon.port}"
    with chromium() as browser:
        page = browser.new_page()
        page.goto(guesser_base + "/")
        assert urlsplit(page.url).path == "/" and page.is_visible("#code")
        errors = []
        for _ in range(3):
            page.fill("#code", "CCCCC-CCCCC")
            page.fill("#password", NEW_PASSWORD)
            page.fill("#repeat", NEW_PASSWORD)
            page.click("#submit")
            page.wait_for_selector("#code-error:not([hidden])")
            errors.append(page.text_content("#code-error"))
            page.evaluate("document.getElementById('code-error').hidden = true")
        assert errors[0] is not None and errors[0].startswith("wrong setup code"), errors
        assert errors[1] is not None and errors[1].startswith("wrong setup code"), errors
        assert errors[2] is not None and "too many failed logins" in errors[2], errors

        owner = browser.new_page()
        owner.goto(daemon.base + "/setup")
        owner.fill("#code", code.lower())
        owner.fill("#password", NEW_PASSWORD)
        owner.fill("#repeat", NEW_PASSWORD + "!")
        owner.click("#submit")
        assert owner.text_content("#repeat-error") == "The two passwords differ."
        owner.fill("#repeat", NEW_PASSWORD)
        with owner.expect_navigation():
            owner.click("#submit")
        # Then the first run's page: name, network, picture, time zone, recording.
        assert urlsplit(owner.url).path == "/welcome"
        wait_js(owner, "document.body.dataset.loaded === 'yes'")
        wait_js(owner, "document.getElementById('picture').naturalWidth > 0")
        wait_js(owner, "document.getElementById('network').textContent.includes('/')")
        address = lan_address()
        assert address in (owner.text_content("#network") or ""), owner.text_content("#network")
        owner.fill("#name", "Front door")
        owner.select_option("#time-zone", "Europe/Berlin")
        owner.check("#recording")
        with owner.expect_navigation(timeout=30_000):
            owner.click("#finish")
        assert urlsplit(owner.url).path == "/"
        settings = load_config(daemon.config_path)
        assert settings.onvif.name == "Front door" and settings.mqtt.name == "Front door"
        assert settings.server.time_zone == "Europe/Berlin"
        assert settings.recording.enabled and settings.motion.enabled
        daemon.logged(r"time zone Europe/Berlin \(UTC\+0[12]00\)", timeout=20)
        wait_for_stats(owner, lambda s: s["framesDecoded"] > 5, timeout=30)
        who = owner.evaluate("fetch('/api/session').then(r => r.json())")
        assert who["user"] == "admin" and who["role"] == "admin"
        # A second attempt, even with the right code, is refused; the setup page is
        # no more.
        again = owner.evaluate(
            """code => fetch('/api/setup', {method: 'POST',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({code, password: 'another-password'})})
               .then(r => r.status)""",
            code,
        )
        assert again == 409
        owner.goto(daemon.base + "/setup")
        assert urlsplit(owner.url).path == "/"
