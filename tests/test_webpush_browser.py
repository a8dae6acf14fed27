"""The installable app in real Chromium: the manifest parses, the service worker
registers and shows the doorbell's push messages as notifications (delivered over
CDP, as a push service would), the app shell opens offline and says the camera is
unreachable, and a page opened from a ring's notification answers the call."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, CDPSession, Page

from peercam.events import Missed, Ring
from peercam.webpush import messages
from tests.browser import chromium, open_page, wait_js
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess

pytestmark = pytest.mark.timeout(150)

NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications()).map((n) => ({
    title: n.title, body: n.body, tag: n.tag, image: n.image, data: n.data,
    requireInteraction: n.requireInteraction, actions: n.actions.map((a) => a.action),
  }));
}"""


def notifications(page: Page, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        shown: list[dict[str, Any]] = page.evaluate(NOTIFICATIONS)
        if len(shown) == count or time.monotonic() > deadline:
            return shown
        time.sleep(0.1)


def registration_id(
    context: BrowserContext, cdp: CDPSession, page: Page, scope: str, versions: list[str]
) -> str:
    """The registration's id for CDP; `versions` collects its worker's life (status,
    running or stopped) from then on, for a failure's message."""
    found: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: found.extend(e["registrations"]))
    cdp.on(
        "ServiceWorker.workerVersionUpdated",
        lambda e: versions.extend(
            f"{time.monotonic():.2f} v{v['versionId']} {v['status']} {v['runningStatus']}"
            for v in e["versions"]
        ),
    )
    cdp.on(
        "ServiceWorker.workerErrorReported",
        lambda e: versions.append(f"{time.monotonic():.2f} error {e['errorMessage']}"),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 10
    while not any(r["scopeURL"] == scope and not r["isDeleted"] for r in found):
        assert time.monotonic() < deadline, f"no registration for {scope}: {found}"
        page.wait_for_timeout(100)  # lets Playwright dispatch the CDP events
    return next(
        str(r["registrationId"]) for r in found if r["scopeURL"] == scope and not r["isDeleted"]
    )


def deliver(cdp: CDPSession, daemon: DaemonProcess, registration: str, body: object) -> None:
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": daemon.base, "registrationId": registration, "data": json.dumps(body)},
    )


def test_installable_app_shows_ring_notifications_and_opens_offline(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(SMALL)
    with chromium() as context:
        context.grant_permissions(["notifications"], origin=daemon.base)
        page = context.new_page()
        open_page(page, daemon.base)
        # Registered and in control of the page (it claims open pages when activated).
        wait_js(page, "navigator.serviceWorker.controller !== null", 20_000)
        assert page.evaluate("navigator.serviceWorker.controller.scriptURL") == (
            daemon.base + "/sw.js"
        )
        cdp = context.new_cdp_session(page)

        manifest = cdp.send("Page.getAppManifest")
        assert manifest["url"] == daemon.base + "/manifest.webmanifest"
        assert manifest["errors"] == [], manifest["errors"]
        parsed = json.loads(manifest["data"])
        assert parsed["display"] == "standalone" and parsed["start_url"] == "/"
        installability = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert installability == [], installability

        versions: list[str] = []
        registration = registration_id(context, cdp, page, daemon.base + "/", versions)
        # The daemon's own ring message, as its push would carry it.
        rang = time.time()
        ring = messages.ring(Ring("button", rang, "ringing"), "ring-1", "/push/ring/x", 30)
        delivered = time.monotonic()
        deliver(cdp, daemon, registration, ring.body)
        shown = notifications(page, 1)
        # Failed once on a loaded CI run (shown == []) and not since: what the worker
        # went through says where the push was lost if it happens again.
        assert len(shown) == 1, (shown, f"delivered {delivered:.2f}", versions,
                                 daemon.log()[-1500:])  # fmt: skip
        assert shown[0]["title"] == "Someone is at the door"
        assert shown[0]["tag"] == "peercam-ring" and shown[0]["requireInteraction"]
        assert shown[0]["actions"] == ["answer", "decline"]
        assert shown[0]["image"] == daemon.base + "/push/ring/x"
        assert shown[0]["data"] == {"kind": "ring", "url": "/?answer=ring-1", "ring": "ring-1"}

        # Rung again: the one notification is renewed, not stacked.
        deliver(cdp, daemon, registration, ring.body)
        assert len(notifications(page, 2, timeout=2)) == 1
        # Missed: the same notification now says so, without the actions.
        deliver(cdp, daemon, registration, messages.ring_over(Missed(rang), "ring-1").body)
        page.wait_for_timeout(500)
        shown = notifications(page, 1)
        assert [(n["title"], n["actions"]) for n in shown] == [("Missed ring", [])], shown

        # The settings say whether this device gets them (no push service here).
        page.click("#toggle-settings")
        wait_js(page, "document.getElementById('push-state').textContent !== 'Checking…'")
        state = page.text_content("#push-state")
        assert state == "This device does not get notifications.", state
        assert page.is_visible("#push-enable") and not page.is_visible("#push-test")

        # Offline, the app shell opens from the worker's cache and says what is wrong.
        context.set_offline(True)
        try:
            page.reload()
            wait_js(page, "document.getElementById('status').textContent.includes('unreachable')")
            offline_status = page.text_content("#status")
        finally:
            context.set_offline(False)
        assert offline_status == "the camera is unreachable: trying again"


def test_page_opened_from_a_ring_notification_answers_the_call(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(SMALL + "\n[doorbell]\nring_timeout = 60\n")
    with chromium() as context:
        page = context.new_page()
        open_page(page, daemon.base)  # logged in, as the app is
        daemon.access.urlopen("/api/ring", method="POST")
        # What the worker opens for a tap or Answer on the ring's notification.
        page.goto(daemon.base + "/?answer=ring-1")
        deadline = time.monotonic() + 30
        while json.loads(daemon.get("/api/state"))["call"] != "in-call":
            assert time.monotonic() < deadline, json.loads(daemon.get("/api/state"))
            time.sleep(0.2)
        assert page.evaluate("location.search") == ""  # a reload will not answer again
        wait_js(page, "!document.getElementById('hangup').hidden")
