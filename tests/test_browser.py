"""The viewer page in real headless Chromium against the real daemon."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import chromium, open_page, page_stats, wait_for_stats, wait_js
from tests.conftest import SMALL as SMALL_CONFIG
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_three_browser_viewers_decode_video_and_receive_audio(
    daemon: DaemonProcess, codec: str
) -> None:
    with chromium() as browser:
        pages = []
        for _ in range(3):
            page = browser.new_page()
            open_page(page, daemon.base, f"/?codec={codec}")
            pages.append(page)
        for page in pages:
            stats = wait_for_stats(
                page, lambda s: s["framesDecoded"] > 30 and s["audioPackets"] > 20
            )
            assert stats["codec"] == codec
            assert (stats["width"], stats["height"]) == (640, 480)
            assert stats["audioCodec"] == "opus"
            assert page.locator("#status").inner_text() == "live"
            # The daemon accepted Chromium's offer of the playout-delay extension, which
            # lets it render each frame once decoded (rtc/playout_delay.py).
            answer = page.evaluate("window.peercam.session.pc.remoteDescription.sdp")
            assert "rtp-hdrext/playout-delay" in answer
        assert daemon.metric("peercam_viewers") == 3
        # Encode once: one encoder for the codec, producing the source's frame rate,
        # not three times it.
        name = codec.lower()
        other = "vp8" if name == "h264" else "h264"
        assert daemon.metric("peercam_encoder_running", codec=name) == 1
        assert daemon.metric("peercam_encoder_running", codec=other) == 0
        before = daemon.metric("peercam_encoded_frames_total", codec=name)
        started = time.monotonic()
        time.sleep(2)
        produced = daemon.metric("peercam_encoded_frames_total", codec=name) - before
        elapsed = time.monotonic() - started
        # At most the camera's 30 fps over the time measured (an encoder per viewer
        # would make three times that). No lower bound but "some": a loaded machine
        # encodes fewer frames, which is not what this test is about.
        assert 0 < produced <= 30 * elapsed + 3, (produced, elapsed)
        for page in pages:
            decoded = page_stats(page)["framesDecoded"]
            time.sleep(0.5)
            assert page_stats(page)["framesDecoded"] > decoded  # still playing


def test_a_viewer_joining_mid_gop_gets_a_requested_keyframe(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(
        """
[camera]
size = "640x480"
[video]
keyframe_interval = 10.0
"""
    )
    with chromium() as browser:
        first = browser.new_page()
        open_page(first, daemon.base, "/?codec=H264")
        wait_for_stats(first, lambda s: s["framesDecoded"] > 10)
        time.sleep(2.5)  # well inside the 10 s GOP
        natural = daemon.metric("peercam_keyframes_total", codec="h264", cause="natural")
        requested = daemon.metric("peercam_keyframes_total", codec="h264", cause="requested")

        second = browser.new_page()
        joined = time.monotonic()
        open_page(second, daemon.base, "/?codec=H264")
        stats = wait_for_stats(second, lambda s: s["framesDecoded"] > 0)
        waited = time.monotonic() - joined
        assert stats["keyFramesDecoded"] >= 1
        # The keyframe it started from was one it asked for, not the GOP's next one.
        assert daemon.metric("peercam_keyframes_total", codec="h264", cause="natural") == natural
        assert daemon.metric("peercam_keyframes_total", codec="h264", cause="requested") > requested
        assert waited < 7, f"first frame after {waited:.1f} s: looks like it waited for the GOP"


def test_page_controls_snapshot_stats_and_reconnect(daemon: DaemonProcess, tmp_path: Path) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        open_page(page, daemon.base, "/")
        wait_for_stats(page, lambda s: s["framesDecoded"] > 10)
        # Muted autoplay, with a button to unmute.
        assert page.evaluate("document.getElementById('video').muted") is True
        assert page.locator("#unmute").inner_text() == "Unmute"
        page.click("#unmute")
        assert page.evaluate("document.getElementById('video').muted") is False
        assert page.locator("#unmute").inner_text() == "Mute"
        # Stats overlay from getStats().
        page.click("#toggle-stats")
        wait_js(
            page, "document.getElementById('stats').textContent.includes('640x480')", timeout=5000
        )
        page.wait_for_timeout(1500)
        assert page_stats(page)["bitrateKbps"] > 100  # a live rate, even read twice at once
        overlay = page.locator("#stats").inner_text()
        for label in ("codec", "fps", "bitrate", "rtt", "lost", "jitter buf"):
            assert label in overlay
        # Snapshot downloads a PNG of the current picture.
        with page.expect_download() as download_info:
            page.click("#snapshot")
        target = tmp_path / "snap.png"
        download_info.value.save_as(target)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # Every control is on screen at phone width.
        for control in ("#unmute", "#snapshot", "#toggle-stats", "#fullscreen"):
            box = page.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        # The daemon drops the session (as after a network cut): the page reconnects.
        session = page.evaluate("window.peercam.session.location")
        daemon.access.urlopen(urlsplit(session).path, method="DELETE")
        wait_js(
            page,
            f"window.peercam.session && window.peercam.session.location !== {session!r}"
            " && window.peercam.connects >= 2",
            timeout=30_000,
        )
        decoded = page_stats(page)["framesDecoded"]
        wait_for_stats(page, lambda s: s["framesDecoded"] > decoded + 10)


def test_back_online_the_page_reconnects_at_once_not_after_its_backoff(
    start_daemon: StartDaemon,
) -> None:
    first = start_daemon()
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, first.base, "/")
        wait_for_stats(page, lambda s: s["framesDecoded"] > 10)
        assert first.terminate() == 0  # the camera goes away
        # Failed attempts back off: 0.5, 1, 2, 4, 8 s between them.
        wait_js(page, "window.peercam.retryMs >= 8000", timeout=30_000)
        # The camera is back at the same address, and the browser's network changes.
        # Same state directory, as after a restart: the login survives it.
        second = start_daemon(
            SMALL_CONFIG, "--port", str(first.port), "--state-dir", str(first.state_dir)
        )
        started = time.monotonic()
        page.evaluate("window.dispatchEvent(new Event('online'))")
        wait_js(page, "window.peercam.connects >= 2", timeout=10_000)
        assert time.monotonic() - started < 4  # not the up to 8 s of the pending backoff
        wait_for_stats(page, lambda s: s["framesDecoded"] > 10)
        assert second.process.poll() is None
