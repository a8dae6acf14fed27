"""Pairing over HTTP (remote/pairing_api.py) against the real daemon, in process: the
admin's offer, the phone's request (made in Python as the page makes it), the device
list and unpairing, who may do each, and every refused request answered with a 4xx
and its reason, logged, with the device list unchanged.

The browser's side of the same (the /pair page, the admin's panel, the QR code read
off the screen) is tests/test_remote_pairing_page.py."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from peercam.auth.store import CredentialStore
from peercam.config import build_config
from peercam.remote.keys import b64url, from_b64url, key_id
from peercam.remote.pairing import DEFAULT_LIFETIME, check_response, make_request
from peercam.remote.service import RemoteAccess
from peercam.service.state_dir import state_directory
from tests.access import TEST_PASSWORD, basic
from tests.inprocess_daemon import InProcessDaemon
from tests.settable_clock import Clock

pytestmark = pytest.mark.timeout(60)

BROKER = "ws://127.0.0.1:1/mqtt"  # nothing listens: the link keeps retrying meanwhile
ANNA = ("anna", "anna-is-an-admin-too")
FAMILY = ("family", "family-only-watches")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessDaemon]:
    state = tmp_path_factory.mktemp("remote-api") / "state"
    config = build_config(
        {
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "redirect_http": False,
                "state_dir": str(state),
            },
            "camera": {"source": "test", "size": "320x240", "fps": 15},
            "audio": {"enabled": False},
            "talkback": {"enabled": False},
            "remote": {
                "enabled": True,
                "broker": BROKER,
                "page_username": "phones",
                "page_password": "broker-secret",
                "topic_prefix": "home/peercam",
            },
        }
    )
    daemon = InProcessDaemon(config)
    store = CredentialStore(state_directory(str(state)))
    store.set_password(ANNA[0], ANNA[1], "admin")
    store.set_password(FAMILY[0], FAMILY[1], "viewer")
    with daemon:
        yield daemon


def remote_of(daemon: InProcessDaemon) -> RemoteAccess:
    assert daemon.daemon is not None
    found = [o for o in daemon.daemon.parts.outputs if isinstance(o, RemoteAccess)]
    assert len(found) == 1
    return found[0]


class Client:
    def __init__(self, daemon: InProcessDaemon, headers: dict[str, str]) -> None:
        self.base = daemon.base
        self.http = daemon.access.session(headers=headers)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def call(
        self, method: str, path: str, body: object = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        async with self.http.request(
            method, self.base + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


def admin(daemon: InProcessDaemon, who: tuple[str, str] = ("admin", TEST_PASSWORD)) -> Client:
    return Client(daemon, basic(*who))


def anonymous(daemon: InProcessDaemon) -> Client:
    return Client(daemon, {})


def phone_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def offer(client: Client) -> dict[str, Any]:
    status, body = await client.call("POST", "/api/remote/offers")
    assert status == 201, body
    return dict(body)


def fragment_of(url: str) -> tuple[str, bytes]:
    """(camera id, secret) from the QR code's URL, as the /pair page reads them."""
    version, camera, secret = url.split("#", 1)[1].split(".")
    assert version == "1"
    return camera, from_b64url(secret, "secret")


async def devices(daemon: InProcessDaemon) -> list[dict[str, Any]]:
    async with admin(daemon) as client:
        status, body = await client.call("GET", "/api/remote/devices")
    assert status == 200, body
    return list(body["devices"])


async def test_offers_and_the_device_list_are_for_admins_pairing_is_public(
    daemon: InProcessDaemon,
) -> None:
    remote = remote_of(daemon)
    assert daemon.daemon is not None
    served = {
        (route.method, route.resource.canonical)
        for route in daemon.daemon.parts.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    remote_routes = {r for r in served if r[1] == "/pair" or r[1].startswith("/api/remote/")}
    public = {("GET", "/pair"), ("GET", "/api/remote/camera"), ("POST", "/api/remote/pair")}
    assert public < remote_routes
    async with anonymous(daemon) as nobody, Client(daemon, basic(*FAMILY)) as viewer:
        for method, path in remote_routes - public:
            path = path.replace("{id}", "0" * 32)
            assert (await nobody.call(method, path))[0] == 401, (method, path)
            status, body = await viewer.call(method, path)
            assert status == 403 and "needs the admin role" in body, (method, path, body)
        # HEAD too: the whole of /api/remote/ is for admins, not only the named routes.
        assert (await viewer.call("HEAD", "/api/remote/devices"))[0] == 403
        status, page = await nobody.call("GET", "/pair")
        assert status == 200 and '<script type="module" src="/ui/pair.js">' in page
        status, body = await nobody.call("GET", "/api/remote/camera")
        assert status == 200 and body == {"camera": remote.channel.camera_id}

    async with admin(daemon) as client:
        made = await offer(client)
    port = daemon.base.rsplit(":", 1)[1]
    camera, secret = fragment_of(made["url"])
    assert made["url"].startswith(f"https://127.0.0.1:{port}/pair#1.")
    assert camera == remote.channel.camera_id and len(secret) == 16
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", made["code"])
    assert made["expires_in"] == DEFAULT_LIFETIME
    assert abs(made["expires"] - (time.time() + DEFAULT_LIFETIME)) < 30
    # A standalone SVG an <img> can show: its namespace, a viewBox to scale by, and
    # black on a white ground (the page is dark). Decoded for real, off the screen,
    # by tests/test_remote_pairing_page.py.
    svg = ET.fromstring(made["qr_svg"])
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert re.fullmatch(r"0 0 (\d+) \1", svg.attrib["viewBox"])
    assert 'fill="#fff"' in made["qr_svg"] and 'stroke="#000"' in made["qr_svg"]


async def test_a_phone_pairs_by_qr_code_or_typed_code_and_acts_as_the_admin_who_offered(
    daemon: InProcessDaemon,
) -> None:
    remote = remote_of(daemon)
    before = {device["id"] for device in await devices(daemon)}
    async with admin(daemon) as client, anonymous(daemon) as phone:
        made = await offer(client)
        camera, secret = fragment_of(made["url"])
        key = phone_key()
        request, pair_key = make_request(secret, camera, key, "Anna's phone", time.time())
        status, answer = await phone.call("POST", "/api/remote/pair", request)
        assert status == 200, answer
        assert answer["rendezvous"] == {
            "url": BROKER,
            "username": "phones",
            "password": "broker-secret",
            "topic_prefix": "home/peercam",
        }
        camera_key = check_response(answer, pair_key, request)
        assert camera_key == remote.channel.public_key
        qr_device = key_id(b64url_decode(request["device_key"])).hex()
        assert answer["device"] == qr_device

    # A second admin, logged in by cookie like the page, offers; the phone types the code.
    async with anonymous(daemon) as anna, anonymous(daemon) as phone:
        async with anna.http.post(
            daemon.base + "/login", json={"user": ANNA[0], "password": ANNA[1]}
        ) as response:
            assert response.status == 200
        made = await offer(anna)
        camera = (await phone.call("GET", "/api/remote/camera"))[1]["camera"]
        typed = made["code"].lower()
        request, pair_key = make_request(typed, camera, phone_key(), "tablet", time.time())
        status, answer = await phone.call("POST", "/api/remote/pair", request)
        assert status == 200, answer
        check_response(answer, pair_key, request)
        typed_device = answer["device"]

    listed = {d["id"]: d for d in await devices(daemon) if d["id"] not in before}
    assert set(listed) == {qr_device, typed_device}
    assert listed[qr_device]["user"] == "admin" and listed[qr_device]["name"] == "Anna's phone"
    assert listed[typed_device]["user"] == "anna" and listed[typed_device]["name"] == "tablet"
    for device in listed.values():
        assert set(device) == {"id", "name", "user", "paired_at", "last_seen"}  # no key
        assert abs(device["paired_at"] - time.time()) < 30 and device["last_seen"] is None
    async with admin(daemon) as client:
        status, body = await client.call("GET", "/api/remote/devices")
    assert body["link"] == {"connected": False, "broker": BROKER}
    assert body["camera"] == remote.channel.camera_id


def b64url_decode(text: str) -> bytes:
    return from_b64url(text, "test")


async def test_refused_pairings_say_why_are_logged_and_change_nothing(
    daemon: InProcessDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    remote = remote_of(daemon)
    camera = remote.channel.camera_id
    async with admin(daemon) as client, anonymous(daemon) as phone:
        # A request that worked, to replay.
        made = await offer(client)
        _, secret = fragment_of(made["url"])
        used, _ = make_request(secret, camera, phone_key(), "first", time.time())
        assert (await phone.call("POST", "/api/remote/pair", used))[0] == 200
        listed = await devices(daemon)
        stored = remote.devices.path.read_bytes()

        made = await offer(client)
        code = made["code"]
        now = time.time()
        wrong_code = "0000000000" if code != "00000-00000" else "1111111111"
        bad_point = dict(make_request(code, camera, phone_key(), "x", now)[0])
        bad_point["device_key"] = b64url(b"\x04" + bytes(64))
        cases: list[tuple[str, object, int, str]] = [
            ("wrong code", make_request(wrong_code, camera, phone_key(), "x", now)[0], 403,
             "bad-mac"),
            ("replayed", used, 403, "replayed"),
            ("other camera", make_request(code, secrets.token_hex(16), phone_key(), "x", now)[0],
             403, "camera"),
            ("stale request", make_request(code, camera, phone_key(), "x", now - 400)[0], 403,
             "expired"),
            ("not a P-256 point", bad_point, 400, "bad-key"),
            ("not an object", [], 400, "garbage"),
            ("version 2", {"v": 2}, 400, "version"),
            ("missing fields", {"v": 1, "camera": camera}, 400, "garbage"),
            ("name too long",
             make_request(code, camera, phone_key(), "n" * 65, now)[0], 400, "garbage"),
        ]  # fmt: skip
        raw_cases = [
            ("not JSON", b"{pair me", 400, "garbage"),
            ("not UTF-8", b'{"v": 1, "name": "\xff"}', 400, "garbage"),
            ("nested past the parser's depth", b"[" * 4000, 400, "garbage"),
            ("oversized", b'{"v": 1, "pad": "' + b"x" * 5000 + b'"}', 413, "too-large"),
        ]
        with caplog.at_level(logging.WARNING, logger="peercam.remote.pairing_api"):
            for what, body, status, code_expected in [
                *[(w, json.dumps(b).encode(), s, c) for w, b, s, c in cases],
                *raw_cases,
            ]:
                caplog.clear()
                got, answer = await phone.call("POST", "/api/remote/pair", raw=body)
                assert (got, answer.get("error")) == (status, code_expected), (what, answer)
                assert answer["reason"] and "Traceback" not in answer["reason"], what
                assert any(answer["reason"] in r.getMessage() for r in caplog.records), what

        # An offer past its lifetime (the pairing's clock moved on, as its unit tests do).
        made = await offer(client)
        clock = Clock(time.time() + DEFAULT_LIFETIME + 1)
        real_clock = remote.pairing._clock
        remote.pairing._clock = clock
        try:
            late, _ = make_request(made["code"], camera, phone_key(), "late", clock())
            status, answer = await phone.call("POST", "/api/remote/pair", late)
        finally:
            remote.pairing._clock = real_clock
        assert (status, answer["error"]) == (403, "expired"), answer
        assert answer["reason"] == "the pairing code was expired"

    assert await devices(daemon) == listed
    assert remote.devices.path.read_bytes() == stored


async def test_unpairing_removes_the_device_unknown_ids_are_404(
    daemon: InProcessDaemon,
) -> None:
    remote = remote_of(daemon)
    async with admin(daemon) as client, anonymous(daemon) as phone:
        made = await offer(client)
        camera, secret = fragment_of(made["url"])
        request, _ = make_request(secret, camera, phone_key(), "to unpair", time.time())
        status, answer = await phone.call("POST", "/api/remote/pair", request)
        assert status == 200
        device = answer["device"]
        assert device in {d["id"] for d in await devices(daemon)}

        # A phone cannot unpair anyone; an admin can.
        assert (await phone.call("DELETE", f"/api/remote/devices/{device}"))[0] == 401
        assert (await client.call("DELETE", f"/api/remote/devices/{device}"))[0] == 204
        assert device not in {d["id"] for d in await devices(daemon)}
        assert remote.devices.get(device) is None
        assert device not in remote.devices.path.read_text()

        for unknown in (device, "0" * 32, "not-an-id", "A" * 32, "0" * 33):
            status, body = await client.call("DELETE", f"/api/remote/devices/{unknown}")
            assert (status, body["error"]) == (404, "unknown-device"), (unknown, body)


async def test_remote_routes_are_absent_when_remote_access_is_off(tmp_path: Path) -> None:
    config = build_config(
        {
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "redirect_http": False,
                "state_dir": str(tmp_path / "state"),
            },
            "camera": {"source": "test", "size": "320x240", "fps": 15},
            "audio": {"enabled": False},
            "talkback": {"enabled": False},
        }
    )
    with InProcessDaemon(config) as off:
        async with admin(off) as client:
            assert (await client.call("POST", "/api/remote/offers"))[0] == 404
            assert (await client.call("GET", "/pair"))[0] == 404
