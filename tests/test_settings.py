"""Settings from the page (issue 23): the model describes the form, a change is
checked by the model and written to peercam.toml in place (comments kept, atomic,
a backup beside it), applied live or by a restart in place, and survives a restart
of the process; users and tokens; viewers get nothing of it."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peercam.config import load_config
from peercam.http.access import ADMIN_ONLY_PREFIXES
from peercam.service.addresses import lan_address
from peercam.service.network_status import network_status, wireless_signals
from peercam.settings.config_file import ConfigFile
from peercam.tls.certificate import CertificateFiles
from tests.access import TEST_PASSWORD, Access, basic, bearer
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.conftest import CAMERA_320, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_auth import all_routes, peercam, status_of
from tests.whep_viewer import WhepViewer

COMMENTED = (
    "# The front door camera: keep it small, the uplink is slow.\n"
    + CAMERA_320
    + "\n[motion]\n# Leaves move in the wind: a higher threshold.\nenabled = true\n"
    "threshold = 30\ncooldown_seconds = 0\n"
)


async def put(access: Access, changes: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        access.session() as http,
        http.put(access.base + "/api/settings", json={"changes": changes}) as response,
    ):
        return response.status, await response.json()


async def get(access: Access, path: str = "/api/settings") -> Any:
    async with access.session() as http, http.get(access.base + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def next_run(access: Access, run: str) -> Any:
    """GET /api/settings from the daemon's next run (the one restarted in place)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = await get(access)
            if answer["run"] != run:
                return answer
        except (aiohttp.ClientError, OSError, AssertionError):
            pass
        assert time.monotonic() < deadline, "the daemon did not restart"
        await asyncio.sleep(0.3)


def motion_counts(access: Access) -> dict[str, float]:
    text = access.urlopen("/metrics").decode()
    found = re.findall(r'^peercam_motion_pictures_total\{seen="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {seen: float(count) for seen, count in found}


async def test_the_form_is_the_models_and_bad_values_change_nothing(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CAMERA_320)
    settings = await get(daemon.access)
    form = settings["form"]
    camera = form["schema"]["$defs"]["CameraConfig"]["properties"]
    assert camera["fps"]["maximum"] == 60 and "picamera2" in camera["source"]["enum"]
    assert "brightness" in form["help"]["motion.threshold"]  # config.py's own comment
    assert form["impact"]["motion.threshold"] == "nothing"
    assert form["impact"]["camera.size"] == "camera"
    assert form["impact"]["doorbell.ring_timeout"] == "restart"
    assert settings["file"] == str(daemon.config_path)
    assert settings["running"]["camera"]["size"] == "320x240"

    # The address for a phone: the LAN's, not the loopback the test used, and the
    # certificate's fingerprint as the browser will show it.
    phone = await get(daemon.access, "/api/settings/phone")
    assert phone["url"] == f"https://{lan_address()}:{daemon.port}/"
    own = CertificateFiles(
        daemon.state_dir / "tls-cert.pem", daemon.state_dir / "tls-key.pem", self_signed=True
    )
    assert phone["fingerprint"] == own.fingerprint()
    assert ET.fromstring(phone["qr_svg"]).tag.endswith("svg")

    before = daemon.config_path.read_bytes()
    status, answer = await put(daemon.access, {"camera.fps": 500, "camera.size": "huge"})
    assert status == 400
    assert answer["errors"] == {
        "camera.fps": "Input should be less than or equal to 60",
        "camera.size": "expected WIDTHxHEIGHT such as 1280x720, got 'huge'",
    }
    status, answer = await put(daemon.access, {"server.time_zone": "Mars/Olympus_Mons"})
    assert status == 400 and answer["errors"] == {
        "server.time_zone": "unknown time zone 'Mars/Olympus_Mons': an IANA name such as "
        "Europe/Berlin"
    }
    status, answer = await put(daemon.access, {"camera.colour": "red", "nonsense": 1})
    assert status == 400 and answer["errors"] == {
        "camera.colour": "unknown key", "nonsense": "unknown key",
    }  # fmt: skip
    # A combination the model refuses as a whole is named too.
    status, answer = await put(daemon.access, {"motion.masks": [{"x": 2, "y": 0}]})
    assert status == 400 and answer["errors"]["motion.masks"].startswith("0.x: ")
    async with daemon.access.session() as http:
        for body in (b"not json", b"[]", b'{"changes": {}}', b'{"changes": 3}'):
            async with http.put(
                daemon.access.base + "/api/settings", data=body,
                headers={"Content-Type": "application/json"},
            ) as response:  # fmt: skip
                assert response.status == 400, body
    assert daemon.config_path.read_bytes() == before
    assert not daemon.config_path.with_name("peercam.toml.bak").exists()
    assert "Traceback" not in daemon.log()


async def test_a_live_setting_applies_without_a_restart_and_keeps_the_files_comments(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(COMMENTED)
    access = daemon.access
    # The test pattern's square never stops: the detector sees motion.
    deadline = time.monotonic() + 20
    while motion_counts(access).get("moving", 0) < 3:
        assert time.monotonic() < deadline, motion_counts(access)
        await asyncio.sleep(0.3)
    before = daemon.config_path.read_text()
    # A zone over the whole picture: motion there is ignored, from the next picture.
    whole = [{"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}]
    status, answer = await put(access, {"motion.masks": whole, "motion.threshold": 40})
    assert status == 200, answer
    assert answer["impact"] == "nothing" and sorted(answer["saved"]) == [
        "motion.masks", "motion.threshold",
    ]  # fmt: skip
    await asyncio.sleep(0.5)
    counts = motion_counts(access)
    await asyncio.sleep(3)
    later = motion_counts(access)
    assert later["still"] >= counts.get("still", 0) + 5, (counts, later)
    assert later["moving"] == counts["moving"], (counts, later)
    # Written in place: comments and order kept, the old file beside it.
    text = daemon.config_path.read_text()
    assert "# The front door camera: keep it small" in text
    assert "# Leaves move in the wind: a higher threshold." in text
    assert "threshold = 40" in text
    assert daemon.config_path.with_name("peercam.toml.bak").read_text() == before
    assert load_config(daemon.config_path).motion.masks[0].width == 1.0
    log = daemon.log()
    assert "setting motion.threshold changed by admin from 127.0.0.1: 30 -> 40" in log
    assert "restarting in place" not in log
    running = (await get(access))["running"]["motion"]
    assert running["threshold"] == 40 and len(running["masks"]) == 1


async def test_a_camera_change_restarts_only_the_camera_and_viewers_stay(
    start_daemon: StartDaemon,
) -> None:
    """A new size restarts the camera and its encoders, nothing else: a viewer
    connected before it is never dropped and goes on at the new size."""
    daemon = start_daemon(CAMERA_320)
    access = daemon.access
    async with WhepViewer(access) as viewer:
        (frame,) = await viewer.video_frames(1)
        assert (frame.width, frame.height) == (320, 240)
        status, answer = await put(access, {"camera.size": "160x120", "camera.fps": 10})
        assert status == 200 and answer["impact"] == "camera", answer
        assert "restarts the camera and its encoders" in answer["says"]
        deadline = time.monotonic() + 20
        while (frame.width, frame.height) != (160, 120):
            assert time.monotonic() < deadline, (frame.width, frame.height)
            (frame,) = await viewer.video_frames(1)
        later = await viewer.video_frames(5)
        assert all((f.width, f.height) == (160, 120) for f in later)
    log = daemon.log()
    assert "restarting in place" not in log
    assert log.count("test pattern") >= 2  # the camera was built again
    assert (await get(access))["running"]["camera"]["size"] == "160x120"
    # The file passes the daemon's own validation, and a new process starts on it.
    assert load_config(daemon.config_path).camera.size == "160x120"
    daemon.terminate()
    again = DaemonProcess(daemon.log_path.parent, daemon.config_path.read_text())
    try:
        assert "160x120 at 10 fps" in again.log()
    finally:
        again.terminate()


async def test_other_settings_restart_the_daemon_in_place_on_the_same_port(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(CAMERA_320)
    before = await get(daemon.access)
    status, answer = await put(daemon.access, {"doorbell.ring_timeout": 45})
    assert status == 200 and answer["impact"] == "restart", answer
    assert "live views come back by themselves" in answer["says"]
    daemon.logged("restarting in place on the new settings")
    after = await next_run(daemon.access, before["run"])
    assert after["running"]["doorbell"]["ring_timeout"] == 45 and after["rolled_back"] is None
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(1)
    assert daemon.process.poll() is None
    assert "stopped cleanly" not in daemon.log()  # the process never stopped


async def test_new_settings_the_daemon_cannot_start_on_are_rolled_back(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Valid to the model, impossible here (a certificate file that is not there):
    the daemon goes back to the previous file and settings by itself, and says so."""
    daemon = start_daemon(CAMERA_320)
    before_text = daemon.config_path.read_text()
    before = await get(daemon.access)
    missing = {
        "server.tls_cert": str(tmp_path / "no.pem"),
        "server.tls_key": str(tmp_path / "no.key"),
    }
    status, answer = await put(daemon.access, missing)
    assert status == 200 and answer["impact"] == "restart", answer
    after = await next_run(daemon.access, before["run"])
    assert "the new settings did not start (config error: server.tls" in after["rolled_back"]
    assert after["running"]["server"]["tls_cert"] is None
    assert daemon.config_path.read_text() == before_text
    # A camera that cannot be built goes the same way, through a restart.
    status, answer = await put(
        daemon.access, {"camera.source": "file", "camera.file": str(tmp_path / "no.mp4")}
    )
    assert status == 200, answer
    again = await next_run(daemon.access, after["run"])
    assert again["rolled_back"] is not None and again["running"]["camera"]["source"] == "test"
    assert daemon.config_path.read_text() == before_text


def test_a_file_that_was_not_there_is_put_back_as_not_there(tmp_path: Path) -> None:
    file = ConfigFile(tmp_path / "peercam.toml")
    before = file.snapshot()
    document, _ = file.plan({"camera.fps": 10})
    file.save(document)
    assert file.path.exists() and before is None
    file.put_back(before)
    assert not file.path.exists()


def test_none_inside_a_list_is_a_key_left_out(tmp_path: Path) -> None:
    """An ICE server without a user name (None in the model) is written as TOML can."""
    file = ConfigFile(tmp_path / "peercam.toml")
    document, config = file.plan({"webrtc.ice_servers": [{"urls": ["stun:stun.example:3478"]}]})
    file.save(document)
    assert "username" not in file.path.read_text()
    assert load_config(file.path).webrtc.ice_servers == config.webrtc.ice_servers


def test_the_command_lines_values_are_not_written_into_the_file(tmp_path: Path) -> None:
    file = ConfigFile(tmp_path / "peercam.toml", {"camera": {"fps": 30}})
    document, config = file.plan({"camera.fps": 20})
    assert config.camera.fps == 30  # the command line wins while it runs
    assert document["camera"]["fps"] == 20


async def test_secrets_never_reach_the_page_and_are_kept_unless_changed(
    start_daemon: StartDaemon,
) -> None:
    turn = '[[webrtc.ice_servers]]\nurls = ["turn:127.0.0.1:3478"]\nusername = "cam"\n'
    mqtt = '[mqtt]\nhost = "127.0.0.1"\nusername = "cam"\npassword = "mqtt-do-not-leak"\n'
    sip = '[sip]\nregistrar = "127.0.0.1"\nuser = "door"\npassword = "sip-do-not-leak"\n'
    daemon = start_daemon(
        CAMERA_320 + mqtt + sip + turn + 'credential = "turn-password-do-not-leak"\n'
    )
    settings = await get(daemon.access)
    assert "do-not-leak" not in json.dumps(settings)
    server = settings["written"]["webrtc"]["ice_servers"][0]
    assert server["credential"] == settings["form"]["unchanged"]
    # The list sent back as the page shows it, with another user name: the secret stays.
    server["username"] = "camera"
    status, answer = await put(daemon.access, {"webrtc.ice_servers": [server]})
    assert status == 200, answer
    kept = load_config(daemon.config_path).webrtc.ice_servers[0]
    assert (kept.username, kept.credential) == ("camera", "turn-password-do-not-leak")
    # Kept only for the same server: not sent on to one the page names.
    moved = dict(server, urls=["turn:elsewhere.example:3478"])
    status, answer = await put(daemon.access, {"webrtc.ice_servers": [moved]})
    assert status == 400 and "webrtc.ice_servers" in answer["errors"], answer
    status, answer = await put(daemon.access, {"mqtt.host": "elsewhere.example"})
    assert status == 400 and "give mqtt.password again" in answer["errors"]["mqtt.host"]
    # The PBX's password is not sent on to another PBX either.
    status, answer = await put(daemon.access, {"sip.registrar": "elsewhere.example"})
    assert status == 400 and "give sip.password again" in answer["errors"]["sip.registrar"]
    status, answer = await put(
        daemon.access, {"mqtt.host": "elsewhere.example", "mqtt.password": "a-new-one"}
    )
    assert status == 200, answer
    assert "do-not-leak" not in daemon.log() and "a-new-one" not in daemon.log()


async def test_viewers_get_403_on_every_settings_endpoint_and_strangers_401(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    routes = [(m, p) for m, p in await all_routes(tmp_path) if p.startswith(ADMIN_ONLY_PREFIXES)]
    paths = {p for _, p in routes}
    for expected in ("/settings", "/api/settings", "/api/users", "/api/tokens"):
        assert expected in paths, paths
    peercam(daemon, "passwd", "--user", "guest", "--role", "viewer", "--stdin",
            stdin="guest-password\n")  # fmt: skip
    viewer = basic("guest", "guest-password")
    for method, path in routes:
        status, _, body = await status_of(daemon.access, method, path, viewer)
        assert status == 403, (method, path, status, body)
        status, *_ = await status_of(daemon.access, method, path, {})
        assert status == 401, (method, path)


async def test_users_and_tokens_from_the_page(daemon: DaemonProcess) -> None:
    access = daemon.access

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            access.session() as http,
            http.request(method, access.base + path, json=body) as response,
        ):
            text = await response.text()
            return response.status, json.loads(text) if text else None

    # A token, shown once, works at once and stops at once when revoked.
    status, made = await call("POST", "/api/tokens", {"name": "nvr", "role": "viewer"})
    assert status == 201 and made["token"].startswith("pct_"), made
    nvr = access.with_headers(bearer(made["token"]))
    assert json.loads(nvr.urlopen("/api/session"))["role"] == "viewer"
    status, listed = await call("GET", "/api/tokens")
    assert [t["name"] for t in listed] == ["nvr"] and "token" not in listed[0]
    assert (await call("POST", "/api/tokens", {"name": "nvr"}))[0] == 409
    bad = await call("POST", "/api/tokens", {"name": "x", "lifetime_days": -1})
    assert bad[0] == 400 and bad[1]["field"] == "lifetime_days"
    assert (await call("DELETE", f"/api/tokens/{made['id']}"))[0] == 204
    status, *_ = await status_of(access, "GET", "/api/session", bearer(made["token"]))
    assert status == 401
    # Users: add, promote, reset, remove; the last admin stays.
    weak = await call("POST", "/api/users", {"name": "kid", "role": "viewer", "password": "x"})
    assert weak[0] == 400 and weak[1]["field"] == "password"
    status, _ = await call(
        "POST", "/api/users", {"name": "kid", "role": "viewer", "password": "kids-password"}
    )
    assert status == 201
    assert (await call("PATCH", "/api/users/kid", {"role": "admin"}))[1]["role"] == "admin"
    # A refused change changes nothing, not even the part that was fine.
    status, answer = await call("PATCH", "/api/users/kid", {"role": "viewer", "password": "x"})
    assert status == 400 and answer["field"] == "password"
    assert {"name": "kid", "role": "admin"} in (await call("GET", "/api/users"))[1]
    assert (await call("PATCH", "/api/users/kid", {"password": "new-kids-password"}))[0] == 200
    kid = access.with_headers(basic("kid", "new-kids-password"))
    assert json.loads(kid.urlopen("/api/session"))["role"] == "admin"
    assert (await call("DELETE", "/api/users/kid"))[0] == 204
    status, answer = await call("DELETE", "/api/users/admin")
    assert status == 409 and "last admin" in answer["error"]
    status, answer = await call("PATCH", "/api/users/admin", {"role": "viewer"})
    assert status == 409
    assert json.loads(access.urlopen("/api/session"))["role"] == "admin"
    log = daemon.log()
    for line in ("token nvr (viewer) created by admin", "token nvr revoked by admin",
                 "user kid (viewer) added by admin", "user kid removed by admin"):  # fmt: skip
        assert line in log, line
    assert TEST_PASSWORD not in log


def test_chromium_changes_the_frame_size_draws_a_zone_and_manages_a_token(
    start_daemon: StartDaemon,
) -> None:
    """As an admin does it: the live view in one tab comes back at the new size by
    itself (never reloaded) after the settings tab saves it; a zone dragged over the
    whole picture stops motion being seen, live; a token made and revoked."""
    daemon = start_daemon(COMMENTED)
    with chromium() as browser:
        live = browser.new_page()
        open_page(live, daemon.base)
        wait_for_stats(live, lambda s: s.get("width") == 320 and s["framesDecoded"] > 5)
        live.evaluate("window.neverReloaded = true")

        page = browser.new_page()
        page.goto(daemon.base + "/settings")
        wait_js(page, "document.body.dataset.loaded !== undefined")
        wait_js(page, "document.getElementById('phone-qr').naturalWidth > 0")
        assert (page.text_content("#phone-fingerprint") or "").count(":") == 31
        assert page.text_content("#section-camera .field[data-key='camera.size'] .impact") == (
            "restarts the camera"
        )
        # A size the model refuses: said beside the field, nothing saved.
        page.fill("#field-camera-size", "tiny")
        page.click("#section-camera button.save")
        page.click("#section-camera .confirm-save")
        error = page.locator(".field[data-key='camera.size'] .field-error")
        error.wait_for(state="visible")
        assert "expected WIDTHxHEIGHT" in (error.text_content() or "")
        assert 'size = "320x240"' in daemon.config_path.read_text()

        page.fill("#field-camera-size", "160x120")
        page.click("#section-camera button.save")
        confirm = page.locator("#section-camera .confirm")
        assert "restarts the camera and its encoders" in (confirm.text_content() or "")
        page.click("#section-camera .confirm-save")
        wait_js(page, "document.getElementById('settings-status').textContent"
                ".includes('the camera restarted')", timeout=30_000)  # fmt: skip
        wait_for_stats(live, lambda s: s.get("width") == 160, timeout=45)
        assert live.evaluate("window.neverReloaded") is True

        # A zone over the whole picture, dragged with the mouse: saved live.
        wait_js(page, "document.querySelector('#section-motion .zone-picture').naturalWidth > 0")
        canvas = page.locator("#section-motion .zone-canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 1, box["y"] + 1)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] - 1, steps=5)
        page.mouse.up()
        assert "Zone 1" in (page.text_content("#section-motion .zone-list") or "")
        page.click("#section-motion button.save")
        assert "nothing is interrupted" in (page.text_content("#section-motion .confirm") or "")
        page.click("#section-motion .confirm-save")
        wait_js(page, "document.getElementById('settings-status').textContent"
                ".includes('applied')")  # fmt: skip
        masks = load_config(daemon.config_path).motion.masks
        assert len(masks) == 1 and masks[0].width > 0.98 and masks[0].height > 0.98, masks
        counts = motion_counts(daemon.access)
        time.sleep(3)
        later = motion_counts(daemon.access)
        assert later["still"] >= counts.get("still", 0) + 5, (counts, later)
        assert later.get("moving", 0) == counts.get("moving", 0), (counts, later)

        # A token: shown once, listed, revoked.
        page.fill("#create-token input[name=name]", "nvr")
        page.click("#create-token button[type=submit]")
        page.locator("#new-token").wait_for(state="visible")
        secret = page.text_content("#new-token code") or ""
        assert secret.startswith("pct_")
        nvr = daemon.access.with_headers(bearer(secret))
        assert json.loads(nvr.urlopen("/api/session"))["role"] == "viewer"
        page.locator("#token-table tr[data-token='nvr'] button").click()
        page.locator("#token-table tr[data-token='nvr']").wait_for(state="detached")
        with pytest.raises(urllib.error.HTTPError) as refused:
            nvr.urlopen("/api/session")
        assert refused.value.code == 401


def test_wifi_signal_is_read_from_the_kernels_table() -> None:
    """/proc/net/wireless as a Pi's brcmfmac writes it (this machine has no Wi-Fi)."""
    table = (
        "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n"
        " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n"
        " wlan0: 0000   57.  -53.  -256        0      0      0      0     47        0\n"
    )
    assert wireless_signals(table) == {"wlan0": -53.0}
    interfaces = network_status()
    assert all(i.wireless is None for i in interfaces)  # none here
    assert any(i.addresses for i in interfaces)
