"""Remote access as a household meets it (tests/nat_network.py): the camera behind a
home NAT that lets nothing in, the broker and the TURN server on the internet, the
phone in Chromium. The phone pairs at home, leaves (Wi-Fi down, mobile data up behind
its carrier's NAT), opens the app from its cache and watches, answers a ring, opens
the door and plays a clip, all with nothing opened on the home router; first over a
direct path through both NATs, then, with that path blocked, over the relay."""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from tests import nat_network as net
from tests.access import TEST_PASSWORD
from tests.alsa_fixture import fake_sound_card
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.daemon_process import DaemonProcess
from tests.doorbell_page import answer_and_open_door, play_clip_from_its_bytes
from tests.mqtt_broker import Broker
from tests.netns import in_ns
from tests.remote_phone import DOORBELL_CAMERA, remote_config

pytestmark = [
    pytest.mark.skipif(net.why_unavailable() is not None, reason=str(net.why_unavailable())),
    pytest.mark.timeout(300),
]

PHONE_CHROMIUM = str(Path(__file__).parent / "chromium-in-phone-ns")
NO_MDNS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]
CAMERA_PAGE = f"https://{net.CAMERA_WIFI_IP}:8443"
CAMERA = (
    DOORBELL_CAMERA
    + f"""
[webrtc]
ice_servers = [{{urls = ["stun:{net.SERVER_IP}:{net.TURN_PORT}"]}}]
[webrtc.turn_rest]
urls = ["turn:{net.SERVER_IP}:{net.TURN_PORT}?transport=udp"]
secret = "{net.TURN_SECRET}"
"""
)
STATUS = "document.getElementById('status')"


def camera_api(method: str, path: str) -> bytes:
    """The camera's API from inside the home (the test is not on any of these nets)."""
    result = in_ns(
        net.HOME, "curl", "-sSfk", "--max-time", "10", "-u", f"admin:{TEST_PASSWORD}",
        "-X", method, f"https://127.0.0.1:8443{path}", check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"{method} {path}: {result.stderr.strip()}")
    return result.stdout.encode()


def record_clip() -> str:
    deadline = time.monotonic() + 15
    while True:  # the encoder's first keyframe may still be on its way
        try:
            return str(json.loads(camera_api("POST", "/api/events"))["id"])
        except AssertionError:
            assert time.monotonic() < deadline, "no clip could be recorded"
            time.sleep(0.3)


def clip_listed(clip_id: str) -> bool:
    return clip_id in [c["id"] for c in json.loads(camera_api("GET", "/api/events"))["clips"]]


def wait_until(condition: object, what: str, daemon: DaemonProcess, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}:\n{daemon.log()[-4000:]}"
        time.sleep(0.2)


def open_app(page: Page) -> None:
    """Open the app as the phone's home screen does, through network changes."""
    for attempt in range(5):
        try:
            page.goto(CAMERA_PAGE + "/")
            return
        except PlaywrightError as error:
            if "ERR_NETWORK_CHANGED" not in str(error) or attempt == 4:
                raise
            time.sleep(0.5)


def connected_through_rendezvous(page: Page, daemon: DaemonProcess, media: str) -> None:
    try:
        wait_js(page, f"{STATUS}.dataset.state === 'connected'", 45_000)
        wait_js(page, f"{STATUS}.textContent.includes('media {media}')", 10_000)
    except AssertionError:
        shown = page.evaluate(f"{STATUS}.textContent")
        raise AssertionError(f"page says {shown!r}\n{daemon.log()[-4000:]}") from None
    assert page.evaluate(f"{STATUS}.dataset.way") == "rendezvous"
    # What the camera told the outside: no LAN address anywhere (related addresses
    # included), only what the STUN and TURN server saw or gave.
    answer = page.evaluate("window.peercam.session.pc.remoteDescription.sdp")
    types = re.findall(r"a=candidate:\S+ \d+ \S+ \d+ \S+ \d+ typ (\S+)", answer)
    assert types and set(types) <= {"srflx", "relay"}, types
    for lan in ("192.168.77.", "192.168.78.", "10.88."):
        assert lan not in answer, f"{lan} in the answer:\n{answer}"


def test_a_phone_away_from_home_reaches_the_camera_through_both_nats(tmp_path: Path) -> None:
    # Processes end before their namespaces go: `ip netns del` kills nothing.
    with net.network(), ExitStack() as running:
        turn = net.Coturn(str(tmp_path / "coturn.log"))
        running.callback(turn.stop)
        turn.start()
        broker = Broker(
            tmp_path / "broker", websockets=True, host=net.SERVER_IP, netns=net.INTERNET
        )
        running.callback(broker.kill)
        broker.start()
        card = fake_sound_card(tmp_path / "card", seconds=60)
        workdir = tmp_path / "camera"
        workdir.mkdir()
        daemon = DaemonProcess(
            workdir,
            CAMERA + remote_config(broker, candidates="public"),
            netns=net.HOME,
            env={**card.env, "GPIOZERO_PIN_FACTORY": "mock"},
        )
        running.callback(daemon.terminate)
        wait_until(lambda: "remote access: linked to" in daemon.log(), "never linked", daemon)
        wait_until(turn.listening, "coturn did not listen", daemon)
        clip_id = record_clip()
        wait_until(lambda: clip_listed(clip_id), "the clip was not saved", daemon)

        with chromium(NO_MDNS, executable=PHONE_CHROMIUM) as phone:
            page = phone.new_page()
            # At home: the app is installed (its service worker caches it) and paired.
            open_page(page, CAMERA_PAGE)
            wait_js(page, "navigator.serviceWorker.controller !== null", 20_000)
            wait_js(page, "caches.match('/ui/remote_session.js').then((r) => !!r)", 20_000)
            offer = page.evaluate(
                "fetch('/api/remote/offers', {method: 'POST'}).then((r) => r.json())"
            )
            page.goto(offer["url"])
            page.fill("#name", "Phone in a pocket")
            page.click("#submit")
            page.wait_for_selector("#done", state="visible", timeout=15_000)

            # Out of the door: the camera is out of reach, and its router lets
            # nothing in (no port forward: the page's port is closed from outside).
            net.leave_home()
            assert not net.reachable_from_phone(net.CAMERA_WIFI_IP, 8443)
            assert not net.reachable_from_phone(net.HOME_PUBLIC, 8443)
            open_app(page)
            connected_through_rendezvous(page, daemon, "direct")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 10 and s["audioPackets"] > 20)

            answer_and_open_door(page, lambda: camera_api("POST", "/api/ring"))
            play_clip_from_its_bytes(page, clip_id)

            # No direct path between the two NATs: the relay carries the media.
            net.block_direct_udp()
            open_app(page)
            connected_through_rendezvous(page, daemon, "relayed")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 10, timeout=30)

        log = daemon.log()
        assert "answer from admin" in log and "open-door from admin" in log
        assert "Traceback" not in log
