"""The viewer page never hangs on "connecting": in a browser without WebRTC it says so
(and sends no offer), and when creating the peer connection throws it says why and
keeps retrying until it works, as it does after a network drop."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser import chromium, open_page, wait_js
from tests.daemon_process import DaemonProcess

# What WebKitGTK without WebRTC, Safari in Lockdown Mode or Firefox with
# media.peerconnection.enabled off look like to a page.
NO_WEBRTC = """
delete window.RTCPeerConnection;
delete window.webkitRTCPeerConnection;
"""

# Throws twice (as Chromium does for an ICE server entry it cannot parse), then works.
THROWS_TWICE = """
(() => {
  const Real = window.RTCPeerConnection;
  window.peerConnectionAttempts = 0;
  window.RTCPeerConnection = function (...args) {
    window.peerConnectionAttempts += 1;
    if (window.peerConnectionAttempts <= 2) {
      throw new SyntaxError("ICE server parsing failed: 'stun::bad' is not a URL");
    }
    return new Real(...args);
  };
  window.RTCPeerConnection.prototype = Real.prototype;
})();
"""


def badge(page: Page) -> tuple[str | None, str]:
    state = page.get_attribute("#status", "data-state")
    return state, page.text_content("#status") or ""


def watch_errors(page: Page) -> list[str]:
    """Uncaught exceptions and unhandled rejections in the page."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_a_browser_without_webrtc_is_told_so_and_sends_no_offer(daemon: DaemonProcess) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(NO_WEBRTC)
        errors = watch_errors(page)
        offers: list[str] = []
        page.on("request", lambda r: offers.append(r.url) if r.method == "POST" else None)
        open_page(page, daemon.base)
        wait_js(page, "document.getElementById('status').dataset.state === 'error'", 15_000)
        state, text = badge(page)
        assert "WebRTC" in text and "lacks or has turned off" in text, text
        # It stays said: no retry loop, no offer, nothing thrown.
        page.wait_for_timeout(2000)
        assert badge(page) == (state, text)
        assert not [url for url in offers if url.endswith("/whep")], offers
        assert errors == []
        assert daemon.metric("peercam_sessions_total", codec="h264") == 0


def test_a_throwing_peer_connection_is_reported_and_retried_until_it_plays(
    daemon: DaemonProcess,
) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(THROWS_TWICE)
        errors = watch_errors(page)
        shown: list[str] = []
        page.on("console", lambda m: shown.append(m.text) if m.type == "warning" else None)
        open_page(page, daemon.base)
        wait_js(page, "window.peerConnectionAttempts >= 1", 15_000)
        wait_js(page, "document.getElementById('status').textContent === 'live'", 30_000)
        assert page.evaluate("window.peerConnectionAttempts") == 3
        assert any("ICE server parsing failed" in text for text in shown), shown
        assert errors == []
        assert daemon.metric("peercam_viewers") == 1


def test_the_reason_stays_on_the_badge_while_it_retries(daemon: DaemonProcess) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(THROWS_TWICE.replace("<= 2", "<= 1000"))
        errors = watch_errors(page)
        open_page(page, daemon.base)
        wait_js(page, "window.peerConnectionAttempts >= 3", 15_000)
        state, text = badge(page)
        assert state == "error", (state, text)
        assert text.startswith("this browser refused to start WebRTC: ICE server parsing failed")
        assert errors == []
