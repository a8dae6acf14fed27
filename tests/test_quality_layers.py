"""Quality layers over a real narrow path: Chromium behind a `tc tbf` rate limit is
moved to the low layer and back, and kept on it (held to what its path carries) when
even that is too much, while a viewer with room keeps the main one.

The camera, the limited viewer and the router are network namespaces (tests/netns.py);
the limit is a token bucket on the router's link toward the viewer. A second Chromium
runs in the camera's own namespace: a viewer with all the room there is. Figures come
from each page's getStats (web/stats.js) and the camera's side of each connection (the
data channel's stats: rtc/viewer_stats.py, with rtc/layer_chooser.py's status).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests import netns
from tests.browser import SELECTED_PAIR, chromiums, open_page, page_stats, wait_for_stats
from tests.daemon_process import DaemonProcess

HERE = Path(__file__).parent
LIMITED = str(HERE / "chromium-in-viewer-ns")
NEAR = str(HERE / "chromium-in-camera-ns")
CONFIG = """
[camera]
source = "test"
size = "640x480"
fps = 30
lores_size = "320x240"
[video]
codecs = ["h264"]
bitrate_kbps = 1500
low_bitrate_kbps = 400
[audio]
enabled = false
"""
MAIN_WIDTH, LOW_WIDTH = 640, 320
# The camera reaches its viewers only through the router's coturn (tests/netns.py).
RELAYED = f"""{CONFIG}
[webrtc]
ice_transport_policy = "relay"
[webrtc.turn_rest]
urls = ["turn:{netns.TURN_IP}:{netns.TURN_PORT}?transport=udp"]
secret = "{netns.TURN_SECRET}"
"""


def limit(rate: str | None) -> None:
    """The router's link toward the viewer carries at most `rate` (None: no limit).
    A queue of 300 ms, as a home router or a mobile link has."""
    netns.in_ns(netns.NET, "tc", "qdisc", "del", "dev", "view1", "root", check=False)
    if rate is not None:
        netns.in_ns(netns.NET, "tc", "qdisc", "add", "dev", "view1", "root", "tbf",
                    "rate", rate, "burst", "20kb", "latency", "300ms")  # fmt: skip


def camera_side(page: Page) -> dict[str, Any]:
    """The layer status the camera last sent this page (every 2 s)."""
    layer: dict[str, Any] | None = page.evaluate(
        "window.peercam.cameraStats ? window.peercam.cameraStats.layer : null"
    )
    return layer or {}


def wait_for_layer(page: Page, layer: str, timeout: float) -> float:
    """Seconds until the page shows `layer`'s picture and the camera says it sends it."""
    started = time.monotonic()
    width = MAIN_WIDTH if layer == "main" else LOW_WIDTH
    while time.monotonic() - started < timeout:
        if camera_side(page).get("layer") == layer and page_stats(page).get("width") == width:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(
        f"not on layer {layer} within {timeout} s: {camera_side(page)}, {page_stats(page)}"
    )


def metrics(page: Page) -> str:
    text: str = page.evaluate("async () => (await fetch('/metrics')).text()")
    return text


@pytest.mark.timeout(480)
def test_a_narrow_path_gets_the_low_layer_and_the_main_one_back(
    network: None, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path, CONFIG, netns=netns.CAM)
    try:
        with chromiums([LIMITED, NEAR]) as (far, near):
            limited, roomy = far.new_page(), near.new_page()
            for page in (limited, roomy):
                open_page(page, daemon.base, "/")
                wait_for_stats(page, lambda s: s["framesDecoded"] > 30, timeout=30)
            assert camera_side(limited)["layer"] == "main"

            limit("1mbit")
            limited_at = time.monotonic()
            moved = wait_for_layer(limited, "low", timeout=10)
            print(f"1 Mbit/s: on the low layer after {moved:.1f} s")
            # Settled within 10 s (what the old layer left queued on the way is gone):
            # from then on, 30 s of the low layer at full rate without a freeze.
            time.sleep(max(0.0, limited_at + 10 - time.monotonic()))
            before, roomy_before = page_stats(limited), page_stats(roomy)
            time.sleep(30)
            after, roomy_after = page_stats(limited), page_stats(roomy)
            decoded = after["framesDecoded"] - before["framesDecoded"]
            dropped = after["framesDropped"] - before["framesDropped"]
            freezes = after["freezeCount"] - before["freezeCount"]
            print(
                f"1 Mbit/s, 30 s on the low layer: {decoded / 30:.1f} fps decoded, "
                f"{dropped} dropped, {freezes} freezes; camera side {camera_side(limited)}"
            )
            assert camera_side(limited)["layer"] == "low"
            assert decoded >= 25 * 30, after
            assert dropped <= 0.01 * decoded, after
            assert freezes == 0, after
            # The viewer with room kept the main layer at full rate meanwhile.
            roomy_decoded = roomy_after["framesDecoded"] - roomy_before["framesDecoded"]
            assert roomy_after["width"] == MAIN_WIDTH and camera_side(roomy)["layer"] == "main"
            assert roomy_decoded >= 28 * 30, roomy_after
            assert roomy_after["freezeCount"] == roomy_before["freezeCount"], roomy_after
            shown = metrics(roomy)
            assert 'peercam_layer_viewers{layer="low"} 1.0' in shown
            assert 'peercam_layer_viewers{layer="main"} 1.0' in shown
            assert 'peercam_layer_switches_total{layer="low"} 1.0' in shown
            # One encoder per layer in use, however many watch it.
            assert 'peercam_encoder_running{codec="h264"} 1.0' in shown
            assert 'peercam_encoder_running{codec="h264/low"} 1.0' in shown

            limit(None)
            back = wait_for_layer(limited, "main", timeout=20)
            print(f"limit lifted: back on the main layer after {back:.1f} s")
            shown = metrics(roomy)
            assert 'peercam_layer_viewers{layer="main"} 2.0' in shown
            assert 'peercam_layer_switches_total{layer="main"} 1.0' in shown

            # Narrower than even the low layer: the viewer stays on it, held to whole
            # groups of pictures from each keyframe (its path drops the rest), and the
            # viewer with room does not notice.
            limit("300kbit")
            limited_at = time.monotonic()
            wait_for_layer(limited, "low", timeout=10)
            time.sleep(max(0.0, limited_at + 10 - time.monotonic()))
            before, roomy_before = page_stats(limited), page_stats(roomy)
            layers = set()
            for _ in range(30):
                time.sleep(1)
                layers.add(camera_side(limited).get("layer"))
            after, roomy_after = page_stats(limited), page_stats(roomy)
            decoded = after["framesDecoded"] - before["framesDecoded"]
            print(
                f"300 kbit/s, 30 s: {decoded / 30:.1f} fps decoded, "
                f"{after['freezeCount'] - before['freezeCount']} freezes; "
                f"camera side {camera_side(limited)}"
            )
            assert layers == {"low"}, layers  # not flipped up and down
            assert camera_side(limited).get("limitBps"), camera_side(limited)  # held
            # More than its keyframes alone (one each 2 s) get through whole.
            assert decoded >= 3 * 30, after
            roomy_decoded = roomy_after["framesDecoded"] - roomy_before["framesDecoded"]
            assert roomy_decoded >= 28 * 30, roomy_after
            assert roomy_after["freezeCount"] == roomy_before["freezeCount"], roomy_after
    finally:
        daemon.terminate()


@pytest.mark.timeout(240)
def test_a_viewer_behind_a_turn_relay_gets_the_main_layer_back(
    network: None, tmp_path: Path
) -> None:
    """A phone on a mobile network often reaches the camera only through TURN. Over the
    relay too, a viewer moved to the low layer by a narrow moment is probed (through
    aiortc's path, rtc/frame_sender.py) and moved back up once its path has room: its
    browser's estimate alone would never reach the main layer's rate."""
    turn = netns.Coturn(tmp_path / "coturn.log")
    turn.start()
    daemon = DaemonProcess(tmp_path, RELAYED, netns=netns.CAM)
    try:
        with chromiums([LIMITED]) as (far,):
            page = far.new_page()
            open_page(page, daemon.base, "/")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 30, timeout=30)
            pair = page.evaluate(SELECTED_PAIR)
            assert pair["remote"] == "relay", pair
            assert camera_side(page)["layer"] == "main"

            limit("1mbit")
            moved = wait_for_layer(page, "low", timeout=15)
            print(f"relayed, 1 Mbit/s: on the low layer after {moved:.1f} s")
            limit(None)
            back = wait_for_layer(page, "main", timeout=40)
            print(f"relayed, limit lifted: back on the main layer after {back:.1f} s")
            assert page.evaluate(SELECTED_PAIR)["remote"] == "relay"
            assert 'peercam_layer_switches_total{layer="main"} 1.0' in metrics(page)
    finally:
        daemon.terminate()
        turn.stop()
