"""The page's side of remote access (web/remote_crypto.js) in real Chromium against
the camera's side in Python: the browser pairs (QR fragment and typed code), seals
for the camera, opens the camera's answers, and refuses what the camera refuses.

The module is served at a routed https:// origin (WebCrypto needs a secure context)
without any server: Playwright answers the requests itself."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route

from peercam.remote.devices import DeviceStore
from peercam.remote.keys import load_or_make_camera_key
from peercam.remote.pairing import Pairing
from peercam.remote.refused import Refused
from peercam.remote.sealing import CameraChannel
from tests.browser import chromium

pytestmark = pytest.mark.timeout(120)

WEB = Path(__file__).resolve().parent.parent / "web"
ORIGIN = "https://peercam.test"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
def page() -> Iterator[Page]:
    def serve(route: Route) -> None:
        if route.request.url.endswith("/remote_crypto.js"):
            body = (WEB / "remote_crypto.js").read_text()
            route.fulfill(status=200, content_type="text/javascript", body=body)
        else:
            route.fulfill(
                status=200, content_type="text/html", body="<!doctype html><title>t</title>"
            )

    with chromium() as browser:
        page = browser.new_page()
        page.route(f"{ORIGIN}/**", serve)
        page.goto(f"{ORIGIN}/")
        page.evaluate(
            """async () => {
                window.remote = await import('/remote_crypto.js');
                window.b64 = (bytes) => btoa(String.fromCharCode(...bytes));
                window.unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
            }"""
        )
        yield page


def browser_pairs(page: Page, pairing: Pairing, slot: str, how: str) -> dict[str, Any]:
    """The page makes its key and a request (from the QR fragment or the typed code);
    the camera accepts it; the page checks the answer and opens its channel."""
    offer = pairing.offer()
    secret = offer.qr_fragment() if how == "qr" else offer.display_code().lower()
    request: dict[str, Any] = page.evaluate(
        """async ([slot, how, secret, cameraId]) => {
            const r = window.remote;
            const keyPair = await r.generateDeviceKey();
            const from = how === 'qr' ? r.parseQrFragment('#' + secret) : { secret, cameraId };
            const { request, key } = await r.pairingRequest({
                secret: from.secret, cameraId: from.cameraId, keyPair, name: 'Chromium ' + slot });
            window[slot] = { keyPair, key, request };
            return request;
        }""",
        [slot, how, secret, offer.camera_id.hex()],
    )
    device, response = pairing.accept(request)
    device_id: str = page.evaluate(
        """async ([slot, response]) => {
            const r = window.remote;
            const s = window[slot];
            const cameraPublicKey = await r.checkPairingResponse(response, s.key, s.request);
            s.channel = await r.DeviceChannel.create({ keyPair: s.keyPair, cameraPublicKey });
            return s.channel.deviceId;
        }""",
        [slot, response],
    )
    assert device_id == device.id
    return response


def browser_seal(page: Page, slot: str, payload: bytes) -> bytes:
    sealed: str = page.evaluate(
        "async ([slot, payload]) => b64(await window[slot].channel.seal(unb64(payload)))",
        [slot, b64(payload)],
    )
    return unb64(sealed)


def browser_open(page: Page, slot: str, data: bytes) -> dict[str, Any]:
    """{"payload": ...} or {"refused": code}; anything but Refused fails the test."""
    result: dict[str, Any] = page.evaluate(
        """async ([slot, data]) => {
            try {
                const opened = await window[slot].channel.open(unb64(data));
                return { payload: b64(opened.payload), sentAt: opened.sentAt };
            } catch (error) {
                if (error instanceof window.remote.Refused) return { refused: error.code };
                return { error: String(error) };
            }
        }""",
        [slot, b64(data)],
    )
    assert "error" not in result, result
    return result


def test_browser_and_camera_interoperate(page: Page, tmp_path: Path) -> None:
    store = DeviceStore(tmp_path)
    key = load_or_make_camera_key(tmp_path)
    pairing = Pairing(key, store)
    camera = CameraChannel(key, store)
    browser_pairs(page, pairing, "phone", "qr")
    browser_pairs(page, pairing, "tablet", "code")
    assert sorted(device.name for device in store.devices()) == [
        "Chromium phone",
        "Chromium tablet",
    ]
    phone_id = page.evaluate("window.phone.channel.deviceId")
    tablet_id = page.evaluate("window.tablet.channel.deviceId")

    # Sealed in the browser, opened in Python.
    offer = b'{"type":"offer","sdp":"v=0\\r\\n"}' + bytes(range(256)) * 40
    sealed = browser_seal(page, "phone", offer)
    assert b"offer" not in sealed
    opened = camera.open(sealed)
    assert opened.payload == offer and opened.device_id == phone_id
    assert abs(opened.sent_at - time.time()) < 30
    with pytest.raises(Refused) as caught:
        camera.open(sealed)
    assert caught.value.code == "replayed"
    assert camera.open(browser_seal(page, "tablet", b"")).device_id == tablet_id

    # Sealed in Python, opened in the browser.
    answer = camera.seal(phone_id, b'{"type":"answer"}')
    assert unb64(browser_open(page, "phone", answer)["payload"]) == b'{"type":"answer"}'
    assert browser_open(page, "phone", answer) == {"refused": "replayed"}
    assert browser_open(page, "phone", camera.seal(tablet_id, b"x")) == {"refused": "recipient"}
    altered = bytearray(camera.seal(phone_id, b"answer"))
    altered[-3] ^= 1
    assert browser_open(page, "phone", bytes(altered)) == {"refused": "forged"}
    assert browser_open(page, "phone", sealed) == {"refused": "direction"}
    assert browser_open(page, "phone", b"\x01\x02") == {"refused": "truncated"}
    assert browser_open(page, "phone", b"\x09" * 200) == {"refused": "version"}

    # Unpaired: the browser's next message is refused by name.
    store.remove(phone_id)
    with pytest.raises(Refused) as caught:
        camera.open(browser_seal(page, "phone", b"still there?"))
    assert caught.value.code == "unknown-device"


def test_browser_open_only_ever_refuses_garbage(page: Page, tmp_path: Path) -> None:
    """The page's open() on random and damaged bytes: a Refused every time."""
    store = DeviceStore(tmp_path)
    key = load_or_make_camera_key(tmp_path)
    browser_pairs(page, Pairing(key, store), "phone", "qr")
    camera = CameraChannel(key, store)
    phone_id = page.evaluate("window.phone.channel.deviceId")
    valid = [b64(camera.seal(phone_id, b"answer %d" % n)) for n in range(20)]
    outcomes: dict[str, int] = page.evaluate(
        """async (valid) => {
            const counts = {};
            const note = (key) => { counts[key] = (counts[key] || 0) + 1; };
            const channel = window.phone.channel;
            const attempt = async (bytes) => {
                try {
                    await channel.open(bytes);
                    note('opened');
                } catch (error) {
                    note(error instanceof window.remote.Refused ? 'refused' : 'error: ' + error);
                }
            };
            for (let n = 0; n < 200; n++) {
                await attempt(crypto.getRandomValues(new Uint8Array(n * 3)));
            }
            for (const text of valid) {
                const bytes = unb64(text);
                for (let n = 0; n < 10; n++) {
                    const damaged = bytes.slice();
                    const at = Math.floor(Math.random() * damaged.length);
                    damaged[at] ^= 1 + Math.floor(Math.random() * 255);
                    await attempt(damaged);
                    await attempt(bytes.slice(0, Math.floor(Math.random() * bytes.length)));
                }
            }
            await attempt('not bytes');
            return counts;
        }""",
        valid,
    )
    assert outcomes == {"refused": 200 + 20 * 20 + 1}
