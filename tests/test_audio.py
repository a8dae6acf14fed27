"""Sound both ways through real alsa-lib (file plugin), aiortc peers and Chromium."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np

from tests.alsa_fixture import FakeSoundCard, dominant_frequency, fake_sound_card
from tests.browser import chromium, open_page, wait_for_stats, wait_js
from tests.conftest import StartDaemon
from tests.whep_viewer import WhepViewer

ALSA = """
[camera]
source = "test"
size = "320x240"
[audio]
source = "alsa"
device = "{mic}"
[talkback]
device = "peercam_speaker"
rate = 16000
"""


def received_tone(frames: list[av.AudioFrame]) -> float:
    samples = np.concatenate(
        [f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for f in frames]
    )
    return dominant_frequency(samples, frames[0].sample_rate)


async def test_microphone_tone_reaches_a_viewer_as_opus(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    card = fake_sound_card(tmp_path / "card")
    daemon = start_daemon(ALSA.format(mic="peercam_mic"), env=card.env)
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None and "opus/48000" in viewer.answer.sdp
        frames = await viewer.audio_frames(60)
    assert abs(received_tone(frames[20:]) - card.tone_hz) < 15  # 1 kHz, not the 440 Hz tone
    assert "microphone peercam_mic capturing at 48000 Hz" in daemon.log()


async def test_a_client_offering_only_g711_gets_pcmu(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    card = fake_sound_card(tmp_path / "card")
    daemon = start_daemon(ALSA.format(mic="peercam_mic"), env=card.env)
    async with WhepViewer(daemon.access, audio_codec="audio/PCMU") as viewer:
        assert viewer.answer is not None
        assert "PCMU/8000" in viewer.answer.sdp and "opus" not in viewer.answer.sdp
        frames = await viewer.audio_frames(60)
    assert abs(received_tone(frames[20:]) - card.tone_hz) < 15
    assert daemon.metric("peercam_encoder_running", codec="pcmu") in (0.0, 1.0)
    assert daemon.metric("peercam_encoded_frames_total", codec="pcmu") > 40


async def test_a_missing_microphone_is_retried_and_video_keeps_streaming(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    card = fake_sound_card(tmp_path / "card", seconds=1)
    daemon = start_daemon(ALSA.format(mic="no_such_pcm"), env=card.env)
    async with WhepViewer(daemon.access) as viewer:
        frames = await viewer.video_frames(30)
        assert frames[-1].width == 320
        await asyncio.sleep(1.5)
    log = daemon.log()
    assert "microphone no_such_pcm unavailable" in log and "retrying in" in log
    assert "Traceback" not in log


def speaker_rate(card: FakeSoundCard, seconds: float) -> float:
    before = len(card.played())
    time.sleep(seconds)
    return (len(card.played()) - before) / seconds


def test_talkback_from_chromium_plays_on_the_speaker(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    card = fake_sound_card(tmp_path / "card", seconds=5)
    daemon = start_daemon(ALSA.format(mic="peercam_mic"), env=card.env)
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, daemon.base, "/")
        wait_for_stats(page, lambda s: s["framesDecoded"] > 5)
        wait_js(page, "window.peercamDoorbell.socket.readyState === 1")
        assert len(card.played()) == 0  # nothing plays until someone talks
        page.click("#talk")  # a click toggles talking on
        wait_js(
            page,
            "document.getElementById('talk').getAttribute('aria-pressed') === 'true'",
            timeout=10_000,
        )
        # The browser cancels its own echo (the viewer's speakers into their
        # microphone): the page asks for it, and Chromium's track has it on.
        settings = page.evaluate(
            "window.peercamDoorbell.microphone.getAudioTracks()[0].getSettings()"
        )
        assert settings["echoCancellation"] is True and settings["noiseSuppression"] is True
        time.sleep(1.0)
        rate = speaker_rate(card, 3.0)
        # The configured 16 kHz, resampled from the browser's 48 kHz Opus.
        assert 14_500 <= rate <= 17_500, rate
        recent = card.played()[-16_000:].astype(np.float64)
        assert np.sqrt(np.mean(recent**2)) > 300  # Chromium's fake microphone, not silence
        page.click("#talk")  # and off
        wait_js(page, "document.getElementById('talk').getAttribute('aria-pressed') === 'false'")
        time.sleep(0.5)
        assert speaker_rate(card, 1.0) == 0  # the speaker stopped with the talker
        # Held down, Talk is push-to-talk: on while pressed, off when let go.
        box = page.locator("#talk").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        wait_js(page, "document.getElementById('talk').getAttribute('aria-pressed') === 'true'")
        time.sleep(1.5)
        assert speaker_rate(card, 1.0) > 14_000
        page.mouse.up()
        wait_js(page, "document.getElementById('talk').getAttribute('aria-pressed') === 'false'")
    log = daemon.log()
    assert "talkback: floor released" in log
    # On by default: what the speaker played (16 kHz) went to the canceller as its
    # reference, converted to the microphone's rate, in the two devices' threads.
    assert "echo cancellation on: WebRTC AEC3 at 48000 Hz" in log
    assert "Traceback" not in log and "Exception" not in log


async def test_half_duplex_silences_the_microphone_while_someone_talks(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:

    card = fake_sound_card(tmp_path / "card")
    # Half duplex alone, as the fallback where cancelling is off: the noise
    # suppressor that comes with the canceller would lower the steady test tone.
    config = ALSA.format(mic="peercam_mic") + "half_duplex = true\necho_cancellation = false\n"
    daemon = start_daemon(config, env=card.env)

    def level(frames: list[av.AudioFrame]) -> float:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)
        return float(np.sqrt(np.mean(samples**2)))

    async def talk(session: str, cmd: str) -> None:
        await socket.send_json({"cmd": cmd, "session": session})
        while (reply := await socket.receive_json(timeout=10))["type"] != "result":
            pass
        assert reply["ok"], reply

    async with (
        WhepViewer(daemon.access) as listener,
        WhepViewer(daemon.access) as talker,
        daemon.access.session() as http,
        http.ws_connect(daemon.base + "/events") as socket,
    ):
        assert talker.answer is not None
        session = talker.answer.location.rsplit("/", 1)[1]
        assert level((await listener.audio_frames(50))[10:]) > 3000  # the tone
        await talk(session, "talk")
        await listener.audio_frames(25)  # what was already on its way
        assert level(await listener.audio_frames(25)) < 100  # silence while talking
        await talk(session, "untalk")
        await listener.audio_frames(25)
        assert level(await listener.audio_frames(25)) > 3000  # the tone is back
