"""Limits one client cannot sidestep by using many addresses: viewer sessions per user,
and failed logins from all addresses together (a logged-in page and valid tokens keep
working while someone guesses)."""

from __future__ import annotations

import http.client
import json
import ssl

from aiortc import RTCConfiguration, RTCPeerConnection

from tests.access import TEST_PASSWORD, basic, bearer
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_auth import peercam, token

LIMITS = """
[camera]
source = "test"
size = "320x240"
fps = 15
[auth]
login_failures_per_minute = 5
login_failures_per_minute_total = 12
[viewers]
max_per_client = 10
max_per_user = 2
"""


def request(
    daemon: DaemonProcess,
    source: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, str]:
    """One request from `source` (an address on loopback), the daemon's cert trusted."""
    context = ssl.create_default_context(cafile=str(daemon.access.cert))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", daemon.port, context=context, source_address=(source, 0), timeout=20
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


async def offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def login_cookie(daemon: DaemonProcess) -> str:
    context = ssl.create_default_context(cafile=str(daemon.access.cert))
    connection = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context)
    body = json.dumps({"user": "admin", "password": TEST_PASSWORD})
    connection.request("POST", "/login", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie") or ""
    connection.close()
    assert response.status in (200, 303) and cookie, (response.status, cookie)
    return cookie.split(";", 1)[0]


def test_guessing_from_many_addresses_meets_a_global_budget(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(LIMITS)
    cookie = login_cookie(daemon)
    nvr = token(daemon, "nvr", "viewer")
    wrong = basic("admin", "not-the-password")
    # Four addresses, three wrong passwords each: under every per-address limit.
    for host in range(2, 6):
        for _ in range(3):
            status, _ = request(daemon, f"127.0.0.{host}", "GET", "/api/state", wrong)
            assert status == 401
    # The budget is spent: a fresh address is slowed down, even with the right password.
    status, body = request(daemon, "127.0.0.9", "GET", "/api/state", basic("admin", TEST_PASSWORD))
    assert status == 429 and "too many failed logins" in body, (status, body)
    # The owner's logged-in page and the NVR's token are not locked out.
    assert request(daemon, "127.0.0.1", "GET", "/api/session", {"Cookie": cookie})[0] == 200
    assert request(daemon, "127.0.0.10", "GET", "/api/state", bearer(nvr))[0] == 200


async def test_one_account_cannot_take_every_viewer_slot_from_many_addresses(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(LIMITS)
    peercam(daemon, "passwd", "--user", "family", "--role", "viewer", "--stdin",
            stdin="family-password\n")  # fmt: skip
    family = {**basic("family", "family-password"), "Content-Type": "application/sdp"}
    statuses = [
        request(daemon, f"127.0.0.{host}", "POST", "/whep", family, await offer())
        for host in (2, 3, 4)
    ]
    assert [s for s, _ in statuses[:2]] == [201, 201], statuses
    assert statuses[2][0] == 429 and "at most 2 viewers per user" in statuses[2][1]
    # Another user still gets in.
    admin = {**daemon.access.headers, "Content-Type": "application/sdp"}
    assert request(daemon, "127.0.0.5", "POST", "/whep", admin, await offer())[0] == 201
