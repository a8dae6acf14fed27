"""Web Push against a push service run by the test (tests/push_service.py): the real
daemon signs (VAPID), encrypts (RFC 8291) and posts each doorbell event; the service
checks the signature and decrypts. Subscriptions end on 410, logout, a new password
and a removed user."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peercam.config import build_config
from peercam.events import ClipSaved
from peercam.webpush.sender import endpoint_allowed
from peercam.webpush.subscriptions import Preferences
from tests.access import TEST_PASSWORD, basic
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.inprocess_daemon import InProcessDaemon
from tests.push_service import PushService
from tests.test_auth import peercam

pytestmark = pytest.mark.timeout(120)

RING_TIMEOUT = 3.0


def push_config(ring_timeout: float = RING_TIMEOUT) -> str:
    return (
        SMALL
        + f"""
[doorbell]
ring_timeout = {ring_timeout}
[webpush]
contact = "mailto:doorbell@example.org"
endpoint_hosts = ["127.0.0.1"]
allow_http_endpoints = true
timeout = 5
"""
    )


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    await service.start()
    yield service
    await service.stop()


class Browser:
    """A logged-in browser's cookie, as the page holds it."""

    def __init__(
        self, daemon: DaemonProcess | InProcessDaemon, http: aiohttp.ClientSession
    ) -> None:
        self.daemon = daemon
        self.http = http

    @classmethod
    async def login(
        cls, daemon: DaemonProcess | InProcessDaemon, user: str, password: str
    ) -> Browser:
        http = daemon.access.session(headers={})
        async with http.post(
            daemon.base + "/login", json={"user": user, "password": password}
        ) as response:
            assert response.status == 200, await response.text()
        return cls(daemon, http)

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        async with self.http.request(method, self.daemon.base + path, json=body) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def subscribe(self, subscription: dict[str, Any]) -> None:
        status, body = await self.call(
            "POST", "/api/push/subscribe", {**subscription, "device": "test browser"}
        )
        assert status == 201, body

    async def endpoints(self) -> list[str]:
        status, body = await self.call("GET", "/api/push")
        assert status == 200, body
        endpoints: list[str] = body["endpoints"]
        return endpoints

    async def logout(self) -> None:
        async with self.http.post(self.daemon.base + "/logout", allow_redirects=False) as r:
            assert r.status == 303

    async def close(self) -> None:
        await self.http.close()


async def ring(daemon: DaemonProcess, password: str = TEST_PASSWORD) -> float:
    """Press the bell through the API; when it was pressed (time.time())."""
    async with daemon.access.session(headers=basic("admin", password)) as http:
        pressed = time.time()
        async with http.post(daemon.base + "/api/ring") as response:
            assert response.status == 202
    return pressed


def stored_endpoints(daemon: DaemonProcess) -> list[str]:
    path = daemon.state_dir / "webpush-subscriptions.json"
    if not path.exists():
        return []
    return [s["endpoint"] for s in json.loads(path.read_text())["subscriptions"]]


async def eventually(check: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within time"
        await asyncio.sleep(0.05)


async def test_ring_push_is_signed_encrypted_updated_and_ends_on_410(
    start_daemon: StartDaemon, push_service: PushService
) -> None:
    daemon = start_daemon(push_config())
    phone = push_service.device("phone")
    browser = await Browser.login(daemon, "admin", TEST_PASSWORD)
    try:
        status, about = await browser.call("GET", "/api/push")
        assert status == 200 and about["enabled"] and about["endpoints"] == []
        push_service.vapid_key = about["key"]
        await browser.subscribe(phone.subscription(push_service.base))
        assert await browser.endpoints() == [phone.subscription(push_service.base)["endpoint"]]
        # Kept in the state directory, private, with the VAPID key beside it.
        await eventually(lambda: len(stored_endpoints(daemon)) == 1)
        for name in ("webpush-subscriptions.json", "webpush-vapid.pem"):
            mode = stat.S_IMODE(os.stat(daemon.state_dir / name).st_mode)
            assert mode == 0o600, (name, oct(mode))

        # Rung by a logged-in page's cookie: Basic would add an Argon2 check to the time.
        pressed = time.time()
        assert (await browser.call("POST", "/api/ring"))[0] == 202
        first = (await push_service.wait_for(1))[0]
        latency = first.arrived - pressed
        ring_push = first.payload
        assert ring_push["kind"] == "ring" and ring_push["tag"] == "peercam-ring"
        assert [a["action"] for a in ring_push["actions"]] == ["answer", "decline"]
        assert ring_push["url"] == f"/?answer={ring_push['ring']}"
        assert first.headers["Urgency"] == "high" and first.headers["Topic"] == "ring"
        # Past the ring timeout nobody can answer: the push service need not keep it.
        assert int(first.headers["TTL"]) == int(RING_TIMEOUT)
        assert first.claims["sub"] == "mailto:doorbell@example.org"
        from_daemon = first.arrived - ring_push["at"]
        print(f"\nring -> push service request: {latency * 1000:.1f} ms from the API call, "
              f"{from_daemon * 1000:.1f} ms from the daemon's ring")  # fmt: skip

        # The picture taken at the ring, fetched as the phone does: by its link alone.
        async with (
            daemon.access.session(headers={}) as anonymous,
            anonymous.get(daemon.base + ring_push["image"]) as response,
        ):
            assert response.status == 200 and response.content_type == "image/jpeg"
            assert (await response.read())[:2] == b"\xff\xd8"
        async with (
            daemon.access.session(headers={}) as anonymous,
            anonymous.get(daemon.base + "/push/ring/not-a-token") as response,
        ):
            assert response.status == 404

        # Nobody answers: the same tag now says the ring was missed.
        missed = (await push_service.wait_for(2, within=RING_TIMEOUT + 10))[1].payload
        assert missed["kind"] == "ring-over" and missed["tag"] == "peercam-ring"
        assert missed["title"] == "Missed ring" and missed["ring"] == ring_push["ring"]

        # The notification's Decline: only for the ring it was about.
        await ring(daemon)
        second = (await push_service.wait_for(3))[2].payload
        assert second["ring"] != ring_push["ring"]
        status, _ = await browser.call("POST", "/api/push/decline", {"ring": ring_push["ring"]})
        assert status == 409
        status, _ = await browser.call("POST", "/api/push/decline", {"ring": second["ring"]})
        assert status == 200
        declined = (await push_service.wait_for(4))[3].payload
        assert declined["tag"] == "peercam-ring" and declined["title"] == "Declined by admin"
        assert declined["silent"] is True

        # A test push on demand, reported to the page.
        status, result = await browser.call("POST", "/api/push/test", {})
        assert status == 200 and result == {"sent": 1, "failed": []}
        assert (await push_service.wait_for(5))[4].payload["kind"] == "test"

        # The push service says the subscription is gone: the daemon forgets it.
        push_service.answers["phone"] = 410
        await ring(daemon)
        assert (await push_service.wait_for(6))[5].status == 410
        await eventually(lambda: stored_endpoints(daemon) == [])
        assert await browser.endpoints() == []
        await asyncio.sleep(RING_TIMEOUT + 1)  # the missed ring goes nowhere now
        assert len(push_service.received) == 6
        assert push_service.refused == []
    finally:
        await browser.close()


async def test_subscriptions_end_with_logout_new_password_and_removed_user(
    start_daemon: StartDaemon, push_service: PushService
) -> None:
    daemon = start_daemon(push_config(ring_timeout=30))
    peercam(daemon, "passwd", "--user", "family", "--stdin", stdin="family-password\n")
    tablet, laptop, phone = (push_service.device(n) for n in ("tablet", "laptop", "phone"))
    first = await Browser.login(daemon, "admin", TEST_PASSWORD)
    second = await Browser.login(daemon, "admin", TEST_PASSWORD)
    family = await Browser.login(daemon, "family", "family-password")
    try:
        push_service.vapid_key = (await first.call("GET", "/api/push"))[1]["key"]
        await first.subscribe(tablet.subscription(push_service.base))
        await second.subscribe(laptop.subscription(push_service.base))
        await family.subscribe(phone.subscription(push_service.base))
        # A viewer chooses motion pushes too (off by default).
        status, about = await family.call("GET", "/api/push")
        assert about["preferences"] == {
            "motion": False, "clips": True, "quiet_start": None, "quiet_end": None,
        }  # fmt: skip
        status, about = await family.call(
            "PUT", "/api/push/preferences", {"motion": True, "quiet_start": "7:00"}
        )
        assert status == 400
        status, about = await family.call(
            "PUT", "/api/push/preferences", {"motion": True, "quiet_start": "23:00"}
        )
        assert status == 200 and about["preferences"]["motion"] is True

        # A logout ends that login's subscription only.
        await first.logout()
        assert await second.endpoints() == [laptop.subscription(push_service.base)["endpoint"]]
        await ring(daemon)
        pushes = await push_service.wait_for(2)
        assert sorted(p.device for p in pushes) == ["laptop", "phone"]
        # A viewer's ring has no Answer or Decline: only an admin may.
        assert next(p for p in pushes if p.device == "phone").payload["actions"] == []

        # A new password (on the command line, as an admin does it) ends the user's
        # subscriptions: the next ring reaches the family's phone only.
        peercam(daemon, "passwd", "--user", "admin", "--stdin", stdin="a-new-admin-password\n")
        status, _ = await second.call("POST", "/api/push/decline", {"ring": "x"})
        assert status == 401  # that login ended with the password
        async with daemon.access.session(headers=basic("admin", "a-new-admin-password")) as http:
            ringing = {"ring": pushes[0].payload["ring"]}
            async with http.post(daemon.base + "/api/push/decline", json=ringing) as r:
                assert r.status == 200  # decline the ring going on
        await ring(daemon, "a-new-admin-password")
        pushes = await push_service.wait_for(4)
        assert pushes[2].payload["kind"] == "ring-over" and pushes[2].device == "phone"
        assert pushes[3].payload["kind"] == "ring" and pushes[3].device == "phone"
        assert stored_endpoints(daemon) == [phone.subscription(push_service.base)["endpoint"]]

        # The user removed: their subscription goes too.
        peercam(daemon, "passwd", "--user", "family", "--remove")
        async with daemon.access.session(headers=basic("admin", "a-new-admin-password")) as http:
            async with http.get(daemon.base + "/api/state") as r:
                assert r.status == 200
        await eventually(lambda: stored_endpoints(daemon) == [])
        assert push_service.refused == []
    finally:
        for browser in (first, second, family):
            await browser.close()


async def test_a_hung_push_service_delays_no_other_device_and_not_the_daemon(
    start_daemon: StartDaemon, push_service: PushService
) -> None:
    daemon = start_daemon(push_config(ring_timeout=30))  # webpush.timeout = 5
    hung, phone = push_service.device("hung"), push_service.device("phone")
    push_service.delays["hung"] = 60
    browser = await Browser.login(daemon, "admin", TEST_PASSWORD)
    try:
        push_service.vapid_key = (await browser.call("GET", "/api/push"))[1]["key"]
        await browser.subscribe(hung.subscription(push_service.base))
        await browser.subscribe(phone.subscription(push_service.base))
        pressed = time.time()
        assert (await browser.call("POST", "/api/ring"))[0] == 202
        arrived = [p for p in await push_service.wait_for(1) if p.device == "phone"]
        assert arrived and arrived[0].arrived - pressed < 2, arrived
        # While one push service keeps the daemon waiting, it answers at once.
        for _ in range(5):
            started = time.monotonic()
            assert (await browser.call("GET", "/api/state"))[0] == 200
            assert time.monotonic() - started < 0.5
            await asyncio.sleep(0.2)
        # The next message reaches the phone at once too; the hung request is given up
        # after webpush.timeout, and the subscription stays (no answer is not "gone").
        declined = time.time()
        ringing = {"ring": arrived[0].payload["ring"]}
        assert (await browser.call("POST", "/api/push/decline", ringing))[0] == 200
        pushes = await push_service.wait_for(2)
        assert pushes[1].device == "phone" and pushes[1].payload["kind"] == "ring-over"
        assert pushes[1].arrived - declined < 2
        await asyncio.sleep(6)
        assert len(await browser.endpoints()) == 2
        log = daemon.log()
        assert "no answer within 5 s" in log, log[-2000:]
    finally:
        await browser.close()


async def test_motion_and_clips_follow_each_users_choice_and_quiet_hours(
    tmp_path: Path, push_service: PushService
) -> None:
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
            "webpush": {"endpoint_hosts": ["127.0.0.1"], "allow_http_endpoints": True},
        }
    )
    with InProcessDaemon(config) as daemon:
        parts = daemon.daemon.parts if daemon.daemon else None
        assert parts is not None
        admin = await Browser.login(daemon, "admin", TEST_PASSWORD)
        try:
            push_service.vapid_key = (await admin.call("GET", "/api/push"))[1]["key"]
            await admin.subscribe(push_service.device("defaults").subscription(push_service.base))
            # Motion: off until chosen. A new clip: on.
            daemon.call(parts.doorbell.motion)
            daemon.call(lambda: parts.events.publish(ClipSaved("c1", "ring", time.time())))
            assert [p.payload["kind"] for p in await push_service.wait_for(1)] == ["clip"]
            status, _ = await admin.call("PUT", "/api/push/preferences", {"motion": True})
            daemon.call(parts.doorbell.motion)
            motion = (await push_service.wait_for(2))[1].payload
            assert motion["kind"] == "motion" and motion["tag"] == "peercam-motion"
            # Quiet hours around now: motion and clips wait, a ring does not.
            now = time.localtime()
            start = f"{(now.tm_hour - 1) % 24:02d}:00"
            end = f"{(now.tm_hour + 2) % 24:02d}:00"
            status, _ = await admin.call(
                "PUT", "/api/push/preferences", {"quiet_start": start, "quiet_end": end}
            )
            assert status == 200
            daemon.call(parts.doorbell.motion)
            daemon.call(lambda: parts.events.publish(ClipSaved("c2", "motion", time.time())))
            daemon.call(lambda: parts.doorbell.ring("test"))
            await push_service.wait_for(3)
            await asyncio.sleep(1)
            assert [p.payload["kind"] for p in push_service.received[2:]] == ["ring"]
            assert push_service.refused == []
        finally:
            await admin.close()


def test_only_push_services_are_posted_to() -> None:
    hosts = ["fcm.googleapis.com", "push.apple.com"]
    assert endpoint_allowed("https://fcm.googleapis.com/fcm/send/abc", hosts, False)
    assert endpoint_allowed("https://web.push.apple.com/QO3", hosts, False)
    for refused in (
        "http://fcm.googleapis.com/fcm/send/abc",  # not HTTPS
        "https://fcm.googleapis.com.evil.example/x",
        "https://evilpush.apple.com/x",
        "https://user@fcm.googleapis.com/x",
        "https://192.168.1.1/admin",
        "https://fcm.googleapis.com:notaport/x",
        "file:///etc/passwd",
    ):
        assert not endpoint_allowed(refused, hosts, False), refused


def test_quiet_hours_hold_motion_and_clips_but_never_a_ring() -> None:
    night = Preferences(motion=True, clips=True, quiet_start="22:30", quiet_end="06:15")
    assert night.quiet_at(23, 0) and night.quiet_at(3, 0) and not night.quiet_at(6, 15)
    assert not night.wants("motion", 23, 0) and not night.wants("clip", 1, 0)
    assert night.wants("motion", 12, 0) and night.wants("ring", 23, 0)
    assert night.wants("ring-over", 2, 0)
    lunch = Preferences(motion=True, clips=False, quiet_start="12:00", quiet_end="13:00")
    assert lunch.quiet_at(12, 30) and not lunch.quiet_at(13, 0) and not lunch.wants("clip", 9, 0)
    assert not Preferences(motion=False, clips=True).wants("motion", 12, 0)
