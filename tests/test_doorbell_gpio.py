"""The video doorbell with gpiozero's MockFactory pins and real Chromium pages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from peercam.config import build_config
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.inprocess_daemon import InProcessDaemon

BUTTON, LED_PIN, RELAY, PIR = 17, 27, 22, 4
pytestmark = pytest.mark.timeout(180)


def doorbell_daemon(state_dir: Path, ring_timeout: float = 30.0) -> InProcessDaemon:
    return InProcessDaemon(
        build_config(
            {
                "server": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "redirect_http": False,
                    "state_dir": str(state_dir),
                },
                "camera": {"source": "test", "size": "320x240", "fps": 15},
                "gpio": {
                    "doorbell_pin": BUTTON,
                    "led_pin": LED_PIN,
                    "relay_pin": RELAY,
                    "motion_pin": PIR,
                    "debounce_ms": 0,
                },
                "doorbell": {"ring_timeout": ring_timeout, "door_pulse_ms": 400},
            }
        )
    )


def pin(factory: MockFactory, number: int) -> MockPin:
    result: MockPin = factory.pin(number)
    return result


def press(factory: MockFactory) -> None:
    button = pin(factory, BUTTON)
    button.drive_low()  # pulled up: pressing connects it to ground
    time.sleep(0.05)
    button.drive_high()


def wait_until(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_ring_answer_open_door_and_hang_up(pins: MockFactory, tmp_path: Path) -> None:
    with doorbell_daemon(tmp_path) as daemon, chromium() as browser:
        pages = [browser.new_page(), browser.new_page()]
        for page in pages:
            open_page(page, daemon.base, "/")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 5)
            wait_js(page, "window.peercamDoorbell.socket.readyState === 1")
        led = pin(pins, LED_PIN)
        assert not led.state

        press(pins)
        for page in pages:
            page.wait_for_selector("#ring", state="visible", timeout=5000)
        # Blinking while it rings: the LED pin toggles.
        wait_until(lambda: len({s.state for s in led.states[-6:]}) == 2)

        pages[0].click("#answer")
        pages[0].wait_for_selector("#hangup", state="visible", timeout=5000)
        pages[1].wait_for_selector("#ring", state="hidden", timeout=5000)
        assert "Answered by admin" in pages[1].locator("#notice").inner_text()
        wait_until(lambda: led.state)
        changes = len(led.states)
        time.sleep(0.8)
        assert led.state and len(led.states) == changes  # steady on during the call, no blinking
        assert daemon.daemon is not None
        assert daemon.daemon.talkback.floor.holder is not None  # talkback started

        relay = pin(pins, RELAY)
        pages[0].click("#open-door")
        wait_js(
            pages[0],
            "document.getElementById('notice').textContent.includes('Door opened')",
            timeout=5000,
        )
        wait_until(lambda: not relay.state and any(s.state for s in relay.states))
        # MockPin stamps each state with the time since the previous change.
        high = next(i for i, state in enumerate(relay.states) if state.state)
        pulse = relay.states[high + 1].timestamp
        assert 0.35 <= pulse <= 0.6, pulse  # the configured 400 ms

        pages[0].click("#hangup")
        pages[0].wait_for_selector("#hangup", state="hidden", timeout=5000)
        wait_until(lambda: not led.state)
        assert daemon.daemon.talkback.floor.holder is None


def test_an_unanswered_ring_times_out_and_motion_is_pushed(
    pins: MockFactory, tmp_path: Path
) -> None:
    with doorbell_daemon(tmp_path, ring_timeout=1.0) as daemon, chromium() as browser:
        page = browser.new_page()
        # A page in a background tab, notifications allowed: the ring shows one.
        page.add_init_script(
            """
            window.shownNotifications = [];
            window.Notification = class {
              static permission = 'granted';
              static requestPermission() { return Promise.resolve('granted'); }
              constructor(title) { window.shownNotifications.push(title); }
            };
            Object.defineProperty(document, 'hidden', { get: () => true });
            """
        )
        open_page(page, daemon.base, "/")
        wait_js(page, "window.peercamDoorbell.socket.readyState === 1")
        press(pins)
        page.wait_for_selector("#ring", state="visible", timeout=5000)
        assert page.evaluate("window.shownNotifications") == ["Someone is at the door"]
        page.wait_for_selector("#ring", state="hidden", timeout=5000)
        assert "Missed ring" in page.locator("#notice").inner_text()
        assert not pin(pins, LED_PIN).state
        pin(pins, PIR).drive_high()  # the PIR sensor sees someone
        wait_js(page, "window.peercamDoorbell.events.some(e => e.type === 'motion')", timeout=5000)
