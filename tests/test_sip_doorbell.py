"""The doorbell ringing a house phone: the daemon (in this process, for gpiozero's
MockFactory pins) registered at a real registrar (kamailio), a real phone (baresip)
that answers by itself, and a sound card of alsa-lib's file plugin. The visitor's
tone reaches the phone's recording, the phone's tone the speaker, a key on the phone
pulses the door relay, and a hang-up on either side ends the call."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import BrowserContext, Page

from peercam.config import build_config
from peercam.doorbell.call import CallState
from peercam.sip import sdp
from peercam.sip.message import Request, Response, parse
from peercam.sip.phone_line import PhoneLine
from peercam.sip.register import State
from tests import sip_phone, sip_registrar, video_phone
from tests.alsa_fixture import FakeSoundCard, dominant_frequency, fake_sound_card
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.inprocess_daemon import InProcessDaemon
from tests.sip_registrar import DOMAIN, PASSWORD, PHONE, USER
from tests.test_doorbell_gpio import BUTTON, LED_PIN, PIR, RELAY, pin, press

pytestmark = [
    pytest.mark.skipif(
        (sip_registrar.why_unavailable() or sip_phone.why_unavailable()) is not None,
        reason=str(sip_registrar.why_unavailable() or sip_phone.why_unavailable()),
    ),
    pytest.mark.timeout(180),
]

VISITOR_HZ, PHONE_HZ = 1000.0, 600.0


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[int]:
    with sip_registrar.kamailio(tmp_path) as port:
        yield port


@pytest.fixture
def card(tmp_path: Path) -> Iterator[FakeSoundCard]:
    """The fake sound card, for the daemon in this process: alsa-lib reads its
    configuration again when ALSA_CONFIG_PATH names other files (conf.c's
    snd_config_update_r compares the list), so each test gets its own card."""
    made = fake_sound_card(tmp_path / "card", tone_hz=VISITOR_HZ, seconds=120)
    before = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{made.home / '.asoundrc'}"
    yield made
    if before is None:
        del os.environ["ALSA_CONFIG_PATH"]
    else:
        os.environ["ALSA_CONFIG_PATH"] = before


def daemon(tmp_path: Path, port: int, **sip: Any) -> InProcessDaemon:
    """The daemon registering at the test registrar on `port` (`sip` adds to or
    overrides its [sip] section)."""
    return InProcessDaemon(
        build_config(
            {
                "server": {
                    "host": "127.0.0.1", "port": 0, "redirect_http": False,
                    "state_dir": str(tmp_path / "state"),
                },
                "camera": {"source": "test", "size": "320x240", "fps": 15},
                "audio": {"source": "alsa", "device": "peercam_mic"},
                "talkback": {"device": "peercam_speaker"},
                "gpio": {
                    "doorbell_pin": BUTTON, "led_pin": LED_PIN, "relay_pin": RELAY,
                    "motion_pin": PIR, "debounce_ms": 0,
                },
                "doorbell": {"ring_timeout": 30, "door_pulse_ms": 400},
                "ringback": {"enabled": False},
                "sip": {
                    "enabled": True, "registrar": f"127.0.0.1:{port}", "domain": DOMAIN,
                    "user": USER, "password": PASSWORD, "call": [PHONE], "listen_port": 0,
                    "door_code": "#", **sip,
                },
            }
        )
    )  # fmt: skip


def line(running: InProcessDaemon) -> PhoneLine:
    assert running.daemon is not None
    return next(o for o in running.daemon.parts.outputs if isinstance(o, PhoneLine))


def metric(running: InProcessDaemon, name: str, **labels: str) -> float | None:
    assert running.daemon is not None
    return running.daemon.metrics.registry.get_sample_value(name, labels)


def doorbell_state(running: InProcessDaemon) -> CallState:
    assert running.daemon is not None
    return running.daemon.parts.doorbell.state


def wait_until(condition: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what}"
        time.sleep(0.05)


def registered(running: InProcessDaemon) -> None:
    wait_until(
        lambda: (s := line(running).registration_state) is not None and s.state == State.REGISTERED,
        what="peercam registered",
    )


def tone_of(samples: np.ndarray[Any, Any], rate: int) -> float:
    assert len(samples) >= rate, f"only {len(samples)} samples"
    return dominant_frequency(samples[-rate:], rate)


def test_a_ring_calls_the_phone_which_talks_with_the_visitor_and_opens_the_door(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar, codecs=["pcmu"]) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="in a call")
            assert running.daemon is not None
            holder = running.daemon.parts.doorbell.call_holder
            assert holder is not None and holder.startswith("sip-")
            # The phone's tone out of the speaker (48 kHz, through talkback).
            wait_until(lambda: len(card.played()) > 2 * 48_000, what="the speaker playing")
            assert abs(tone_of(card.played(), 48_000) - PHONE_HZ) < 10

            relay = pin(pins, RELAY)
            phone.command("sndcode", "#")
            wait_until(lambda: any(s.state for s in relay.states), what="the relay pulsed")
            wait_until(lambda: not relay.state)
            high = next(i for i, state in enumerate(relay.states) if state.state)
            assert 0.35 <= relay.states[high + 1].timestamp <= 0.6  # the configured 400 ms

            phone.command("hangup")
            wait_until(lambda: doorbell_state(running) == CallState.IDLE, what="the call ended")
            assert running.daemon.parts.doorbell.talkback.floor.holder is None
            assert metric(running, "peercam_sip_registered") == 1
            assert metric(running, "peercam_sip_calls_total", direction="out", result="talked") == 1
        phone.stop()  # its recording is complete once it has ended
        heard, rate = phone.heard()
        assert abs(tone_of(heard, rate) - VISITOR_HZ) < 10
    finally:
        phone.stop()


def test_the_door_ends_the_call_when_the_daemon_stops(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
        phone.wait_event("CALL_CLOSED", timeout=10)  # the BYE reached the phone
        # peercam's ACK and BYE went through the proxy that record-routed the call.
        routed = (tmp_path / "kamailio.log").read_text(errors="replace")
        assert "routed in dialog: ACK" in routed and "routed in dialog: BYE" in routed
    finally:
        phone.stop()


def playing_page(browser: BrowserContext, running: InProcessDaemon) -> Page:
    """A viewer's page, live: answering names its session, so it must be playing."""
    page = browser.new_page()
    open_page(page, running.base, "/")
    wait_for_stats(page, lambda s: s["framesDecoded"] > 5)
    wait_js(page, "window.peercamDoorbell.socket.readyState === 1")
    return page


def test_a_page_answering_first_stops_the_phone_ringing(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar) as running, chromium() as browser:
            registered(running)
            page = playing_page(browser, running)
            press(pins)
            phone.wait_event("CALL_INCOMING", timeout=10)
            page.wait_for_selector("#ring", state="visible", timeout=5000)
            page.click("#answer")
            phone.wait_event("CALL_CLOSED", timeout=10)  # cancelled
            assert doorbell_state(running) == CallState.IN_CALL
            assert running.daemon is not None
            holder = running.daemon.parts.doorbell.call_holder
            assert holder is not None and not holder.startswith("sip-")
    finally:
        phone.stop()


def test_a_phone_answering_first_stops_the_pages_ringing(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar) as running, chromium() as browser:
            registered(running)
            page = playing_page(browser, running)
            press(pins)
            page.wait_for_selector("#ring", state="visible", timeout=5000)
            phone.wait_event("CALL_INCOMING", timeout=10)
            phone.command("accept")
            page.wait_for_selector("#ring", state="hidden", timeout=10_000)
            assert f"Answered by phone {PHONE}" in page.locator("#notice").inner_text()
            assert not page.is_visible("#answer")
    finally:
        phone.stop()


def test_a_phone_that_never_answers_is_cancelled_after_its_time(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar, ring_seconds=2) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_INCOMING", timeout=10)
            started = time.monotonic()
            phone.wait_event("CALL_CLOSED", timeout=10)
            assert 1.0 <= time.monotonic() - started <= 5.0
            # The pages go on ringing until the doorbell's own time is up.
            assert doorbell_state(running) == CallState.RINGING
    finally:
        phone.stop()


def test_in_sequence_a_number_nobody_has_is_passed_over_for_the_next(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar, ring_mode="sequence", call=["nobody", PHONE]) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="in a call")
    finally:
        phone.stop()


def test_an_allowed_phone_calls_the_door_to_talk_and_opens_it(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar, call=[], allowed_callers=[PHONE]) as running:
            registered(running)
            phone.command("dial", f"sip:{USER}@{DOMAIN}")
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            assert running.daemon is not None
            talkback = running.daemon.parts.doorbell.talkback
            wait_until(lambda: (talkback.floor.holder or "").startswith("sip-"), what="floor")
            assert talkback.floor.holder_label == f"phone {PHONE}"
            assert doorbell_state(running) == CallState.IDLE  # talking, not a doorbell call
            wait_until(lambda: len(card.played()) > 2 * 48_000, what="the speaker playing")
            assert abs(tone_of(card.played(), 48_000) - PHONE_HZ) < 10
            relay = pin(pins, RELAY)
            phone.command("sndcode", "#")
            wait_until(lambda: any(s.state for s in relay.states), what="the relay pulsed")
            phone.command("hangup")
            wait_until(lambda: talkback.floor.holder is None, what="the floor let go")
        phone.stop()
        heard, rate = phone.heard()
        assert abs(tone_of(heard, rate) - VISITOR_HZ) < 10
    finally:
        phone.stop()


def test_a_phone_calling_while_the_bell_rings_answers_it(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar, call=[], allowed_callers=[PHONE]) as running:
            registered(running)
            press(pins)
            wait_until(lambda: doorbell_state(running) == CallState.RINGING, what="ringing")
            phone.command("dial", f"sip:{USER}@{DOMAIN}")
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="answered")
            phone.command("hangup")
            wait_until(lambda: doorbell_state(running) == CallState.IDLE, what="the call ended")
    finally:
        phone.stop()


def test_a_caller_not_allowed_is_refused_and_said_why(
    pins: MockFactory,
    tmp_path: Path,
    registrar: int,
    card: FakeSoundCard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=False)
    try:
        with daemon(tmp_path, registrar, call=[], allowed_callers=["someone"]) as running:
            registered(running)
            phone.command("dial", f"sip:{USER}@{DOMAIN}")
            closed = phone.wait_event("CALL_CLOSED", timeout=10)
            assert "403" in closed.get("param", ""), closed
            assert running.daemon is not None
            assert running.daemon.parts.doorbell.talkback.floor.holder is None
            assert f"a call from sip:{PHONE}@{DOMAIN} refused: not in sip.allowed_callers" in (
                caplog.text
            )
            wait_until(
                lambda: (
                    metric(running, "peercam_sip_calls_total", direction="in", result="refused")
                    == 1
                )
            )
    finally:
        phone.stop()


def test_a_phone_putting_the_call_on_hold_gets_no_audio_until_it_resumes(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    """baresip's hold is a re-INVITE with a=sendonly: peercam answers recvonly and stops
    sending; resume (sendrecv) starts it again."""
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: len(line(running).calls) == 1 and line(running).calls[0].connected)
            media = line(running).calls[0].media
            wait_until(lambda: media.sent > 25, what="audio to the phone")
            phone.command("hold")
            time.sleep(1.0)  # the re-INVITE and its answer
            held = media.sent
            time.sleep(1.0)
            assert media.sent == held  # nothing sent while held
            phone.command("resume")
            wait_until(lambda: media.sent > held + 25, what="audio again after resume")
            assert doorbell_state(running) == CallState.IN_CALL  # the call went on throughout
    finally:
        phone.stop()


def test_a_call_claiming_an_allowed_caller_but_not_from_the_pbx_is_refused(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    """The From header is the caller's say-so: with a PBX, only calls it relays count."""
    with daemon(tmp_path, registrar, call=[], allowed_callers=[PHONE]) as running:
        registered(running)
        invite = Request("INVITE", f"sip:{USER}@127.0.0.1:{line(running).sip_port}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:
            spoofer.bind(("127.0.0.1", 0))
            spoofer.settimeout(5)
            port = spoofer.getsockname()[1]
            for name, value in (
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKspoof"),
                ("Max-Forwards", "70"), ("From", f"<sip:{PHONE}@{DOMAIN}>;tag=x"),
                ("To", f"<sip:{USER}@{DOMAIN}>"), ("Call-ID", "spoof-1"), ("CSeq", "1 INVITE"),
                ("Contact", f"<sip:{PHONE}@127.0.0.1:{port}>"),
                ("Content-Type", "application/sdp"),
            ):  # fmt: skip
                invite.headers.add(name, value)
            invite.body = (
                b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 4000 RTP/AVP 0\r\n"
            )
            spoofer.sendto(invite.to_bytes(), ("127.0.0.1", line(running).sip_port))
            answer = parse(spoofer.recv(65_535))
            while isinstance(answer, Response) and answer.status < 200:
                answer = parse(spoofer.recv(65_535))  # its 100 Trying first
        assert isinstance(answer, Response) and answer.status == 403
        assert running.daemon is not None
        assert running.daemon.parts.doorbell.talkback.floor.holder is None


@pytest.mark.parametrize(
    ("codecs", "rate", "channels"),
    [("G722", 16_000, 1), ("PCMA", 8000, 1), ("opus/48000/2", 48_000, 2)],
)
def test_each_codec_a_phone_may_take_is_answered_from_the_shared_encoder(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard, codecs: str,
    rate: int, channels: int,
) -> None:  # fmt: skip
    """A phone that takes only G.722, only A-law or only Opus is answered in it, both
    ways (its tone to the speaker, the visitor's to its recording)."""
    phone = sip_phone.started(
        tmp_path / "phone", registrar, PHONE_HZ, answer=True, codecs=codecs, rate=rate,
        channels=channels,
    )  # fmt: skip
    try:
        with daemon(tmp_path, registrar) as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: len(line(running).calls) == 1 and line(running).calls[0].connected)
            assert line(running).calls[0].codec == codecs.split("/")[0].lower()
            wait_until(lambda: len(card.played()) > 2 * 48_000, what="the speaker playing")
            assert abs(tone_of(card.played(), 48_000) - PHONE_HZ) < 10
            phone.command("hangup")
            wait_until(lambda: doorbell_state(running) == CallState.IDLE, what="the call ended")
        phone.stop()
        heard, heard_rate = phone.heard()
        assert heard_rate == rate
        assert abs(tone_of(heard, heard_rate) - VISITOR_HZ) < 10
    finally:
        phone.stop()


def test_a_ring_over_tls_calls_the_phone(
    pins: MockFactory, tmp_path: Path, card: FakeSoundCard
) -> None:
    """peercam's leg to the PBX over TLS, its certificate checked against the CA given
    (the phone's own leg is UDP: the PBX bridges them)."""
    if sip_registrar.why_no_tls() is not None:
        pytest.skip(str(sip_registrar.why_no_tls()))
    with sip_registrar.kamailio_with_tls(tmp_path) as (port, tls_port, cert):
        phone = sip_phone.started(tmp_path / "phone", port, PHONE_HZ, answer=True)
        try:
            with daemon(
                tmp_path, port, registrar=f"127.0.0.1:{tls_port}", transport="tls",
                tls_ca_file=str(cert),
            ) as running:  # fmt: skip
                registered(running)
                press(pins)
                phone.wait_event("CALL_ESTABLISHED", timeout=10)
                wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="answered")
                wait_until(lambda: len(card.played()) > 48_000, what="the speaker playing")
                phone.command("hangup")  # its BYE reaches peercam over the TLS connection
                wait_until(lambda: doorbell_state(running) == CallState.IDLE, what="ended")
        finally:
            phone.stop()


def reanswer_of(phone: video_phone.VideoPhone) -> bytes:
    answer = phone.received.reanswer
    assert answer is not None and answer.status == 200
    return answer.body


def test_a_video_phone_gets_the_camera_from_the_shared_encoder(
    pins: MockFactory, tmp_path: Path, card: FakeSoundCard
) -> None:
    """sip.video: a phone that takes H.264 sees the camera (decoded by FFmpeg), from
    the smallest H.264 stream the camera makes; its picture-loss report asks that
    encoder for a keyframe. Called directly, without a PBX."""
    phone = video_phone.VideoPhone()
    phone.start()
    try:
        with InProcessDaemon(
            build_config(
                {
                    "server": {
                        "host": "127.0.0.1", "port": 0, "redirect_http": False,
                        "state_dir": str(tmp_path / "state"),
                    },
                    "camera": {
                        "source": "test", "size": "640x480", "fps": 15, "lores_size": "320x240",
                    },
                    "audio": {"source": "alsa", "device": "peercam_mic"},
                    "talkback": {"device": "peercam_speaker"},
                    "gpio": {"doorbell_pin": BUTTON, "debounce_ms": 0},
                    "ringback": {"enabled": False},
                    "sip": {
                        "enabled": True, "call": [f"sip:videophone@127.0.0.1:{phone.port}"],
                        "listen_port": 0, "video": True, "codecs": ["pcmu"],
                    },
                }
            )
        ) as running:  # fmt: skip
            press(pins)
            wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="answered")
            wait_until(lambda: len(phone.received.frames) >= 30, what="30 pictures decoded")
            assert set(phone.received.frames) == {(320, 240)}  # the small stream
            leg = line(running).calls[0]
            assert leg.video is not None and leg.video.layer == "low"
            wait_until(lambda: leg.video is not None and leg.video.keyframes_asked == 1)
            invite = phone.received.invite
            assert invite is not None and b"m=video" in invite.body
            assert b"packetization-mode=1" in invite.body
            # The phone holds its video (a new offer, video inactive): the answer
            # mirrors it and no picture is sent; taken again, they come again.
            phone.reinvite("inactive")
            wait_until(lambda: phone.received.reanswer is not None, what="the answer")
            held = sdp.parse_video(reanswer_of(phone))
            assert held is not None and held.direction == "inactive" and held.port != 0
            time.sleep(0.5)
            before = leg.video.sent
            time.sleep(1.0)
            assert leg.video.sent == before
            phone.reinvite("recvonly")
            wait_until(lambda: phone.received.reanswer is not None, what="the answer")
            resumed = sdp.parse_video(reanswer_of(phone))
            assert resumed is not None and resumed.direction == "sendonly"
            wait_until(lambda: leg.video is not None and leg.video.sent > before + 10)
    finally:
        phone.stop()


@pytest.mark.parametrize("video", [False, True])
def test_a_phone_calling_with_video_gets_it_or_a_refused_stream(
    pins: MockFactory, tmp_path: Path, card: FakeSoundCard, video: bool
) -> None:
    """An answer keeps the offer's streams (RFC 3264 §6): with sip.video off the
    phone's video is refused with port 0; on, the camera goes to it."""
    phone = video_phone.VideoPhone()
    phone.start()
    try:
        config = build_config(
            {
                "server": {
                    "host": "127.0.0.1", "port": 0, "redirect_http": False,
                    "state_dir": str(tmp_path / "state"),
                },
                "camera": {"source": "test", "size": "320x240", "fps": 15},
                "audio": {"source": "alsa", "device": "peercam_mic"},
                "talkback": {"device": "peercam_speaker"},
                "ringback": {"enabled": False},
                "sip": {
                    "enabled": True, "allowed_callers": ["sip:videophone@127.0.0.1"],
                    "listen_port": 0, "video": video, "codecs": ["pcmu"],
                },
            }
        )  # fmt: skip
        with InProcessDaemon(config) as running:
            phone.call(line(running).sip_port)
            wait_until(lambda: phone.received.answer is not None, what="an answer")
            answer = phone.received.answer
            assert answer is not None and answer.status == 200
            streams = sdp.count_streams(answer.body)
            assert [kind for kind, _ in streams] == ["audio", "video"]
            refused = sdp.parse_video(answer.body)
            assert refused is not None and (refused.port == 0) is not video
            if video:
                wait_until(lambda: len(phone.received.frames) >= 10, what="pictures decoded")
    finally:
        phone.stop()


def test_only_the_whole_door_code_opens_the_door(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard
) -> None:
    """A PIN: "47#" opens; a wrong one, or the right keys too slowly apart, does not."""
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar, door_code="47#") as running:
            registered(running)
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: len(line(running).calls) == 1 and line(running).calls[0].connected)
            leg = line(running).calls[0]
            relay = pin(pins, RELAY)
            for digit in "17#":  # a wrong PIN
                phone.command("sndcode", digit)
                time.sleep(0.4)
            wait_until(lambda: leg.media.keys >= 3, what="the keys heard")
            time.sleep(0.5)
            assert not any(s.state for s in relay.states)
            for digit in "47#":
                phone.command("sndcode", digit)
                time.sleep(0.4)
            wait_until(lambda: any(s.state for s in relay.states), what="the relay pulsed")
            assert leg.media.keys == 6  # each press told once
    finally:
        phone.stop()


def test_wrong_credentials_are_said_and_retried_while_the_doorbell_works_on(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    with daemon(tmp_path, registrar, password="wrong") as running, chromium() as browser:
        wait_until(
            lambda: (s := line(running).registration_state) is not None and s.state == State.FAILED,
            what="the registration failed",
        )
        assert "wrong user name or password; again in 5 s" in caplog.text
        assert metric(running, "peercam_sip_registered") == 0
        # Nothing else is disturbed: the page plays and rings, the button rings.
        page = playing_page(browser, running)
        press(pins)
        page.wait_for_selector("#ring", state="visible", timeout=5000)
        assert doorbell_state(running) == CallState.RINGING


def test_garbage_to_the_phone_line_is_dropped_and_calls_go_on(
    pins: MockFactory, tmp_path: Path, registrar: int, card: FakeSoundCard,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="peercam.sip")
    phone = sip_phone.started(tmp_path / "phone", registrar, PHONE_HZ, answer=True)
    try:
        with daemon(tmp_path, registrar) as running:
            registered(running)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for garbage in (
                    b"\x00\xff" * 40,
                    b"INVITE sip:x SIP/9.9\r\n\r\n",
                    b"SIP/2.0 1\xc2\xb20 OK\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n",
                ):
                    sender.sendto(garbage, ("127.0.0.1", line(running).sip_port))
            wait_until(lambda: caplog.text.count("dropped") >= 3, what="each logged")
            press(pins)
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            wait_until(lambda: doorbell_state(running) == CallState.IN_CALL, what="answered")
            state = line(running).registration_state
            assert state is not None and state.state == State.REGISTERED
    finally:
        phone.stop()
