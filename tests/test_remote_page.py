"""The page as a paired phone uses it away from home, in real Chromium: it signals
through the broker's WebSocket (web/remote_session.js, sealed), never POST /whep,
plays video and audio, answers a ring and opens the door through the data channel,
and lists and plays a clip whose bytes came over the data channel too."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Request

from tests.alsa_fixture import fake_sound_card
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.conftest import StartDaemon
from tests.doorbell_page import PLAYER, answer_and_open_door, play_clip_from_its_bytes
from tests.mqtt_broker import Broker
from tests.remote_phone import DOORBELL_CAMERA, remote_config
from tests.test_clips_page import record_now, wait_for_clip

pytestmark = pytest.mark.timeout(150)

# What a page away from home cannot reach, and so must never need.
CAMERA_ONLY = ("/whep", "/events", "/api/events", "/api/clips/", "/snapshot.jpg")


def test_the_paired_page_works_through_the_rendezvous_alone(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker", websockets=True)
    broker.start()
    try:
        card = fake_sound_card(tmp_path / "card", seconds=30)
        daemon = start_daemon(
            DOORBELL_CAMERA + remote_config(broker, candidates="all"),
            env={**card.env, "GPIOZERO_PIN_FACTORY": "mock"},
        )
        clip_id = record_now(daemon)
        wait_for_clip(daemon, clip_id)
        offer = json.loads(daemon.access.urlopen("/api/remote/offers", method="POST"))
        with chromium() as context:
            page = context.new_page()
            open_page(page, daemon.base)
            # Pair this browser as a phone does from the QR code.
            page.goto(offer["url"])
            page.fill("#name", "Remote page test")
            page.click("#submit")
            page.wait_for_selector("#done", state="visible", timeout=15_000)

            asked: list[str] = []

            def note(request: Request) -> None:
                asked.append(urlsplit(request.url).path)

            page.on("request", note)
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(daemon.base + "/?via=rendezvous")
            status = "document.getElementById('status')"
            try:
                wait_js(page, f"{status}.dataset.state === 'connected'", 30_000)
            except AssertionError:
                shown = page.evaluate(f"{status}.textContent")
                raise AssertionError(f"not connected: {shown!r}; console: {console}") from None
            assert page.evaluate(f"{status}.dataset.way") == "rendezvous"
            wait_js(page, f"{status}.textContent.startsWith('live, through the rendezvous (')")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 10 and s["audioPackets"] > 20)
            assert "media direct" in page.evaluate(f"{status}.textContent")
            # The overlay shows both ends' figures.
            page.click("#toggle-stats")
            wait_js(page, "document.getElementById('stats').textContent.includes('camera sees')")

            # A ring, answered on the page; the door opened; all over the data channel.
            answer_and_open_door(page, lambda: daemon.access.urlopen("/api/ring", method="POST"))

            # The clip list, a picture and the clip itself, played from its bytes.
            play_clip_from_its_bytes(page, clip_id)
            item = f"document.querySelector(\"li.clip[data-id='{clip_id}']\")"
            wait_js(page, f"{item}.querySelector('img')?.src.startsWith('blob:')", 10_000)
            wait_js(page, f"{item}.querySelector('img').naturalWidth > 0", 10_000)
            player = PLAYER
            assert page.evaluate(f"{player}.duration") > 1.0

            # More clips than the camera sends at once (4 transfers per channel): every
            # picture still arrives over the channel, and the list, refreshed by each
            # new clip, keeps the clip being played.
            clip_ids = {clip_id}
            while len(clip_ids) < 6:
                recorded = record_now(daemon)
                wait_for_clip(daemon, recorded)
                clip_ids.add(recorded)
            page.evaluate("window.peercamClips.refresh()")
            for shown in clip_ids:
                page.wait_for_selector(f"li.clip[data-id='{shown}']", timeout=15_000)
            pictures = "[...document.querySelectorAll('li.clip img')]"
            wait_js(
                page,
                f"{pictures}.length >= 6 && {pictures}.every("
                "(img) => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0)",
                30_000,
            )
            # Its blob: URL still opens (a revoked one would not).
            still_opens = """(src) => new Promise((resolve) => {
                const probe = document.createElement('video');
                probe.muted = true;
                probe.onloadedmetadata = () => resolve(true);
                probe.onerror = () => resolve(false);
                probe.src = src;
            })"""
            assert page.evaluate(still_opens, page.evaluate(f"{player}.src"))

        log = daemon.log()
        assert "answer from admin" in log and "open-door from admin" in log
        device = json.loads(daemon.access.urlopen("/api/remote/devices"))["devices"][0]["id"]
        assert f"remote:{device[:12]}" in log
        touched = sorted({path for path in asked if path.startswith(CAMERA_ONLY)})
        assert touched == [], f"the remote page asked the camera directly for {touched}"
        assert "Traceback" not in log
    finally:
        broker.kill()
