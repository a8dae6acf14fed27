"""Pairing a phone in real Chromium against the real daemon: the admin's Remote access
panel shows a QR code, which is read off the screen with zbar as a phone's camera
would; a second browser (the phone, never logged in) opens that URL, pairs, and keeps
the pairing in IndexedDB; the admin's panel lists it, and Unpair removes it. Then the
typed-code path, a wrong code first.

The same over HTTP alone, with every refusal, is tests/test_remote_pairing_api.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.browser import CHROMIUM, FLAGS, open_page, wait_js
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_auth import peercam

pytestmark = pytest.mark.timeout(120)

BROKER = "ws://127.0.0.1:1/mqtt"  # nothing listens: the link keeps retrying meanwhile
REMOTE = SMALL + f'[audio]\nenabled = false\n[remote]\nenabled = true\nbroker = "{BROKER}"\n'

# What the phone keeps, checked by using it: the stored key pair opens a channel to
# the stored camera key under the device id the camera gave.
STORED = """async () => {
    const { loadPairing } = await import('/ui/remote_store.js');
    const { DeviceChannel } = await import('/ui/remote_crypto.js');
    const p = await loadPairing();
    if (!p) return null;
    const channel = await DeviceChannel.create({
        keyPair: p.deviceKeyPair, cameraPublicKey: p.cameraKey });
    return {
        cameraId: p.cameraId, deviceId: p.deviceId, channelId: channel.deviceId,
        cameraKeyBytes: p.cameraKey instanceof Uint8Array ? p.cameraKey.length : null,
        privateExtractable: p.deviceKeyPair.privateKey.extractable,
        name: p.name, rendezvous: p.rendezvous,
    };
}"""


@contextmanager
def two_browsers() -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """One Chromium, two contexts that share nothing (cookies, IndexedDB): the
    admin's computer and the phone."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser.new_context(), browser.new_context()
        finally:
            browser.close()


def read_qr(page: Page, tmp_path: Path) -> str:
    """The admin's QR code as a phone sees it: a screenshot of the panel, decoded."""
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg is missing: `make install-test` installs zbar-tools"
    wait_js(page, "document.getElementById('remote-qr').naturalWidth > 0", 10_000)
    shot = tmp_path / "qr.png"
    page.locator("#remote-qr").screenshot(path=str(shot))
    result = subprocess.run(
        [zbarimg, "--raw", "-q", str(shot)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"no QR code read from the page: {result.stderr}"
    return result.stdout.strip()


def listed(page: Page) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "#remote-devices li strong", "items => items.map((item) => item.textContent)"
    )
    return names


def wait_listed(page: Page, expected: list[str]) -> None:
    wanted = json.dumps(json.dumps(expected, separators=(",", ":")))
    names = "[...document.querySelectorAll('#remote-devices li strong')].map((i) => i.textContent)"
    wait_js(page, f"JSON.stringify({names}) === {wanted}", 10_000)


def api_devices(daemon: DaemonProcess) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = json.loads(daemon.access.urlopen("/api/remote/devices"))[
        "devices"
    ]
    return devices


def pair_phone(phone: Page, name: str) -> dict[str, Any]:
    phone.fill("#name", name)
    phone.click("#submit")
    phone.wait_for_selector("#done", state="visible", timeout=10_000)
    assert phone.text_content("#paired") == "This phone can now reach the camera from anywhere."
    stored: dict[str, Any] = phone.evaluate(STORED)
    return stored


def test_an_admin_pairs_a_phone_by_qr_code_and_by_typed_code_then_unpairs_it(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(REMOTE)
    camera = json.loads(daemon.access.urlopen("/api/remote/camera"))["camera"]
    with two_browsers() as (admin_browser, phone_browser):
        admin = admin_browser.new_page()
        open_page(admin, daemon.base)
        admin.wait_for_selector("#toggle-remote", state="visible", timeout=10_000)
        admin.click("#toggle-remote")
        admin.wait_for_selector("#remote-link:has-text('Not linked')", timeout=10_000)
        assert listed(admin) == [] and admin.is_visible("#remote-none")
        admin.click("#remote-pair")
        admin.wait_for_selector("#remote-offer", state="visible", timeout=10_000)
        assert admin.text_content("#remote-countdown") in ("Valid for 5:00", "Valid for 4:59")

        url = read_qr(admin, tmp_path)
        assert url.startswith(f"{daemon.base}/pair#1.{camera}.")

        phone = phone_browser.new_page()
        phone.goto(url)
        phone.wait_for_selector("#from-qr", state="visible")
        assert phone.is_hidden("#code")
        # The secret is out of the address bar (and so of history and bookmarks).
        assert phone.evaluate("location.href") == f"{daemon.base}/pair"
        assert phone.input_value("#name") == "Chrome on Linux"  # from its user agent
        stored = pair_phone(phone, "Test phone")
        assert stored["cameraId"] == camera and stored["cameraKeyBytes"] == 65
        assert stored["deviceId"] == stored["channelId"]
        assert stored["privateExtractable"] is False
        assert stored["rendezvous"] == {
            "url": BROKER,
            "username": None,
            "password": None,
            "topic_prefix": "peercam",
        }
        # Kept across a reload of the page.
        phone.reload()
        assert phone.evaluate(STORED)["deviceId"] == stored["deviceId"]
        first = stored["deviceId"]

        # The admin's open panel notices the new phone by itself.
        wait_listed(admin, ["Test phone"])
        assert admin.is_hidden("#remote-offer")
        assert admin.text_content("#remote-message") == "Paired: Test phone"
        assert "acts as admin" in (admin.text_content("#remote-devices li div") or "")

        # Typed code: the phone opens /pair on its own; a wrong code first.
        admin.click("#remote-pair")
        admin.wait_for_selector("#remote-offer", state="visible")
        code = admin.text_content("#remote-code") or ""
        assert admin.text_content("#remote-page") == f"{daemon.base}/pair"
        phone.goto(f"{daemon.base}/pair")
        phone.wait_for_selector("#code", state="visible")
        phone.fill("#code", "AAAAA-AAAAA" if code != "AAAAA-AAAAA" else "BBBBB-BBBBB")
        phone.click("#submit")
        phone.wait_for_selector("#error:has-text('does not know this code')", timeout=10_000)
        phone.fill("#code", code.lower().replace("-", " "))
        stored = pair_phone(phone, "Typed phone")
        assert stored["name"] == "Typed phone" and stored["deviceId"] != first
        wait_listed(admin, ["Test phone", "Typed phone"])

        # Unpair the first, from the panel.
        admin.once("dialog", lambda dialog: dialog.accept())
        admin.click(f"#remote-devices li[data-id='{first}'] button.unpair")
        wait_listed(admin, ["Typed phone"])
        assert [d["id"] for d in api_devices(daemon)] == [stored["deviceId"]]
        assert admin.text_content("#remote-message") == "Unpaired: Test phone"

        # A viewer's page offers no such panel (the API refuses it anyway).
        peercam(daemon, "passwd", "--user", "family", "--role", "viewer", "--stdin",
                stdin="family-only-watches\n")  # fmt: skip
        viewer = phone_browser.new_page()
        open_page(viewer, daemon.base, user="family", password="family-only-watches")
        wait_js(viewer, "document.body.dataset.role === 'viewer'", 10_000)
        assert viewer.is_hidden("#toggle-remote")
        assert viewer.evaluate("window.peercamRemote === undefined")
