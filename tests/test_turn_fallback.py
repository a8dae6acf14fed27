"""The relay fallback, proven in network namespaces with a real coturn and Chromium.

Each scenario reads the selected candidate pair from the viewer's getStats(): that
video plays is not enough, it must play over the path the scenario leaves open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests import netns
from tests.browser import SELECTED_PAIR, chromium, open_page, troubles, wait_js
from tests.daemon_process import DaemonProcess

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(netns.why_unavailable() is not None, reason=str(netns.why_unavailable())),
]

BROWSER = str(Path(__file__).parent / "chromium-in-viewer-ns")
# Raw host addresses in the candidates, so the pair types read cleanly.
NO_MDNS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]

CAMERA = """
[camera]
source = "test"
size = "320x240"
fps = 15
[audio]
enabled = false
"""


def turn_config(
    secret: str = netns.TURN_SECRET, relay_only: bool = False, tcp: bool = False
) -> str:
    urls = [f"turn:{netns.TURN_IP}:{netns.TURN_PORT}?transport=udp"]
    if tcp:
        urls.append(f"turn:{netns.TURN_IP}:{netns.TURN_PORT}?transport=tcp")
    quoted = ", ".join(f'"{u}"' for u in urls)
    return f"""{CAMERA}
[webrtc]
ice_transport_policy = "{"relay" if relay_only else "all"}"
[webrtc.turn_rest]
urls = [{quoted}]
secret = "{secret}"
"""


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[netns.Coturn]:
    with netns.network():
        turn = netns.Coturn(tmp_path / "coturn.log")
        turn.start()
        try:
            yield turn
        finally:
            turn.stop()


def start_daemon(tmp_path: Path, config: str, env: dict[str, str] | None = None) -> DaemonProcess:
    workdir = tmp_path / "daemon"
    workdir.mkdir(exist_ok=True)
    return DaemonProcess(workdir, config, netns=netns.CAM, env=env)


def watch(page: Page, daemon: DaemonProcess, timeout: float = 30) -> dict[str, Any]:
    """Open the page and wait until video decodes over a selected pair."""
    open_page(page, daemon.base, "/")
    deadline = time.monotonic() + timeout
    pair: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pair = page.evaluate(SELECTED_PAIR)
        if pair and pair.get("local") and pair["frames"] > 10:
            return pair
        time.sleep(0.3)
    raise AssertionError(
        f"no video over a selected pair in {timeout} s; last: {pair}; {troubles(page)}\n"
        f"{daemon.log()}"
    )


def test_open_path_connects_directly(testbed: netns.Coturn, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, turn_config())
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            pair = watch(browser.new_page(), daemon)
        assert pair["local"] == "host" and pair["remote"] in ("host", "prflx"), pair
        assert pair["protocol"] == "udp"
    finally:
        daemon.terminate()


def test_direct_udp_blocked_falls_back_to_the_relay(testbed: netns.Coturn, tmp_path: Path) -> None:
    netns.block_udp_between_hosts()
    daemon = start_daemon(tmp_path, turn_config())
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            pair = watch(browser.new_page(), daemon)
        assert "relay" in (pair["local"], pair["remote"]), pair
        assert pair["protocol"] == "udp"
    finally:
        daemon.terminate()


def test_no_udp_at_all_from_the_viewer_uses_turn_over_tcp(
    testbed: netns.Coturn, tmp_path: Path
) -> None:
    netns.block_all_udp_from_viewer()
    daemon = start_daemon(tmp_path, turn_config(tcp=True))
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            pair = watch(browser.new_page(), daemon, timeout=45)
        assert pair["local"] == "relay" and pair["relayProtocol"] == "tcp", pair
    finally:
        daemon.terminate()


def test_relay_only_policy_connects_relay_to_relay(testbed: netns.Coturn, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, turn_config(relay_only=True))
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            pair = watch(browser.new_page(), daemon)
        assert (pair["local"], pair["remote"]) == ("relay", "relay"), pair
    finally:
        daemon.terminate()


def test_wrong_turn_credentials_are_a_clear_failure_not_a_hang(
    testbed: netns.Coturn, tmp_path: Path
) -> None:
    netns.block_udp_between_hosts()  # only the relay could connect them
    daemon = start_daemon(tmp_path, turn_config(secret="not-the-servers-secret"))
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            page = browser.new_page()
            open_page(page, daemon.base, "/")
            wait_js(
                page, "document.getElementById('status').dataset.state === 'failed'", timeout=60_000
            )
            status = page.locator("#status").inner_text()
        assert "could not connect" in status and "TURN" in status and "401" in status, status
    finally:
        daemon.terminate()


def test_the_relay_dying_mid_stream_is_reported_and_recovered(
    testbed: netns.Coturn, tmp_path: Path
) -> None:
    netns.block_udp_between_hosts()
    daemon = start_daemon(tmp_path, turn_config())
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            page = browser.new_page()
            pair = watch(page, daemon)
            assert "relay" in (pair["local"], pair["remote"]), pair
            testbed.stop()
            wait_js(
                page,
                "['reconnecting', 'failed']"
                ".includes(document.getElementById('status').dataset.state)",
                timeout=60_000,
            )
            testbed.start()
            wait_js(
                page,
                "document.getElementById('status').dataset.state === 'connected'",
                timeout=60_000,
            )
            deadline = time.monotonic() + 20
            while (after := page.evaluate(SELECTED_PAIR)) is None or after.get("frames", 0) < 10:
                assert time.monotonic() < deadline, after
                time.sleep(0.3)
            assert "relay" in (after["local"], after["remote"]), after
    finally:
        daemon.terminate()


def test_a_port_forward_reaches_the_camera_at_its_public_address(
    testbed: netns.Coturn, tmp_path: Path
) -> None:
    netns.forward_ports_to_camera(41000, 41010)
    config = f"""{CAMERA}
[webrtc]
udp_ports = "41000-41010"
public_ip = "{netns.PUBLIC_IP}"
"""
    daemon = start_daemon(tmp_path, config)
    try:
        with chromium(NO_MDNS, executable=BROWSER) as browser:
            pair = watch(browser.new_page(), daemon)
        # No relay: the viewer reached the camera through the forward, at the public address.
        assert pair["remoteAddress"] == netns.PUBLIC_IP and 41000 <= pair["remotePort"] <= 41010
        assert pair["local"] == "host", pair
    finally:
        daemon.terminate()


def test_turn_over_tls_relays_when_nothing_else_gets_through(tmp_path: Path) -> None:
    ca, certificate, key = netns.make_certificates(tmp_path)
    with netns.network():
        turn = netns.Coturn(tmp_path / "coturn.log", tls=(certificate, key))
        turn.start()
        netns.block_udp_between_hosts()
        netns.block_plain_turn()
        config = (
            CAMERA
            + f"""
[webrtc.turn_rest]
urls = ["turns:{netns.TURN_IP}:{netns.TLS_PORT}?transport=tcp"]
secret = "{netns.TURN_SECRET}"
"""
        )
        # The daemon checks the TURN server's certificate against the test CA; without
        # it (SSL_CERT_FILE=/dev/null) this same test finds no path at all.
        daemon = start_daemon(tmp_path, config, env={"SSL_CERT_FILE": str(ca)})
        try:
            with chromium(NO_MDNS, executable=BROWSER) as browser:
                pair = watch(browser.new_page(), daemon, timeout=45)
            # Only the daemon's relay, allocated over TLS, could carry the stream.
            assert pair["remote"] == "relay", pair
            assert "ICE: daemon uses turns:" in daemon.log()
        finally:
            daemon.terminate()
            turn.stop()
