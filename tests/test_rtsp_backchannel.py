"""The ONVIF audio back-channel (rtsp/backchannel.py) with the client NVRs and Frigate's
go2rtc are tested against: GStreamer's rtspsrc with backchannel=onvif, pushing a tone
(tests/backchannel_sender.py) over TCP and UDP, and go2rtc's way of asking (Require
on DESCRIBE only) by hand; the tone comes out of the speaker (an alsa-lib `file` PCM),
under the page's floor rules."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from peercam.auth.store import open_store
from tests.alsa_fixture import FakeSoundCard, dominant_frequency, fake_sound_card
from tests.conftest import CAMERA_320, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.rtsp_client import RtspClient
from tests.test_rtsp import rtsp_port, url
from tests.whep_viewer import WhepViewer

pytestmark = pytest.mark.timeout(120)

WITH_SPEAKER = (
    CAMERA_320
    + """[audio]
enabled = false
[talkback]
device = "peercam_speaker"
rate = 16000
"""
)
SENDER = Path(__file__).parent / "backchannel_sender.py"
REQUIRE = "www.onvif.org/ver20/backchannel"
PYTHON_WITH_GSTREAMER = "/usr/bin/python3"


def send_tone(
    address: str, seconds: float, hz: float, transport: str = "tcp"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON_WITH_GSTREAMER, str(SENDER), address, "--duration", str(seconds),
         "--frequency", str(hz), "--transport", transport, "--timeout", str(seconds + 20)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def result_of(sender: subprocess.Popen[str]) -> dict[str, object]:
    out, err = sender.communicate(timeout=60)
    lines = out.strip().splitlines()
    assert lines, f"the sender printed nothing; stderr:\n{err[-2000:]}"
    result: dict[str, object] = json.loads(lines[-1])
    result["returncode"] = sender.returncode
    result["stderr"] = err[-1500:]
    return result


def speaker_tone(card: FakeSoundCard, rate: int = 16000) -> tuple[float, int]:
    """The dominant frequency of what the speaker played, from its first sound to its
    last, and how many samples that is."""
    played = card.played().astype(np.float64)
    sounding = np.flatnonzero(np.abs(played) > 300)
    if len(sounding) == 0:
        return 0.0, 0
    span = played[sounding[0] : sounding[-1] + 1]
    if len(span) < rate // 4:
        return 0.0, len(span)
    return dominant_frequency(span, rate), len(span)


def share_at(samples: npt.NDArray[np.float64], hz: float, rate: int = 16000) -> float:
    """The share of `samples`' energy within 20 Hz of `hz`."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    total = float(spectrum.sum())
    return float(spectrum[np.abs(frequencies - hz) < 20].sum()) / total if total else 0.0


def wait_for(daemon: DaemonProcess, text: str, timeout: float = 10) -> None:
    daemon.logged(re.escape(text), timeout)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtspsrc_talks_through_the_speaker(
    start_daemon: StartDaemon, tmp_path: Path, transport: str
) -> None:
    card = fake_sound_card(tmp_path / "card")
    daemon = start_daemon(WITH_SPEAKER, env=card.env)
    sent = result_of(send_tone(url(daemon), 3.0, 700.0, transport))
    assert sent["returncode"] == 0 and sent["error"] is None, sent
    assert sent["codec"] == "PCMU"  # the first law offered
    wait_for(daemon, "talkback: floor released")  # IDLE_RELEASE after the last packet
    tone, loud = speaker_tone(card)
    assert abs(tone - 700.0) < 15, (tone, loud)
    assert loud > 16000 * 2  # most of the three seconds
    log = daemon.log()
    assert f"the ONVIF back-channel over {transport.upper()}" in log
    assert "talkback: admin (NVR) has the floor" in log


def test_someone_else_holding_the_floor_is_not_talked_over(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """The first to talk keeps the floor; a second client's audio is dropped while
    they do, and the log says why."""
    card = fake_sound_card(tmp_path / "card")
    daemon = start_daemon(WITH_SPEAKER, env=card.env)
    first = send_tone(url(daemon), 10.0, 700.0)
    wait_for(daemon, "has the floor", timeout=20)
    second = result_of(send_tone(url(daemon), 2.0, 1300.0))
    assert second["returncode"] == 0, second  # it sent; the camera did not play it
    assert result_of(first)["returncode"] == 0
    wait_for(daemon, "talkback: floor released")
    assert "not heard: admin (NVR) is talking" in daemon.log()
    played = card.played().astype(np.float64)
    spectrum = np.abs(np.fft.rfft(played * np.hanning(len(played))))
    frequencies = np.fft.rfftfreq(len(played), 1 / 16000)

    def energy(hz: float) -> float:
        return float(spectrum[np.abs(frequencies - hz) < 20].sum())

    assert energy(700.0) > 50 * energy(1300.0)


async def test_no_speaker_no_back_channel_and_unknown_options_are_refused(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(WITH_SPEAKER.replace('device = "peercam_speaker"', "enabled = false"))
    sent = await asyncio.to_thread(result_of, send_tone(url(daemon), 1.0, 700.0))
    assert sent["returncode"] == 1 and sent["pushed_buffers"] == 0, sent
    port = rtsp_port(daemon)
    async with RtspClient(port, "/live") as client:
        status, headers = await client.request(
            "DESCRIBE", client.url, Require="www.onvif.org/ver20/backchannel, com.example.other"
        )
        assert status == 551
        assert headers["unsupported"] == "com.example.other, www.onvif.org/ver20/backchannel"
        status, _ = await client.request("DESCRIBE", client.url)
        assert status == 200  # the same connection goes on


def tone_payloads(hz: float, seconds: float) -> list[bytes]:
    """A tone as PCMU, 20 ms a packet."""
    import av

    encoder = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 8000, "mono", "s16"
    encoder.open()
    t = np.arange(int(8000 * seconds)) / 8000
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    payloads = []
    for start in range(0, len(samples) - 159, 160):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + 160], "s16", "mono")
        frame.sample_rate = 8000
        payloads += [bytes(p) for p in encoder.encode(frame)]
    return payloads


async def test_go2rtc_s_way_and_the_floor_given_up_to_whoever_answers(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """go2rtc sends Require with DESCRIBE only, then SETUPs the back-channel like any
    track. A viewer token may not talk; an NVR talking gives way to an admin who
    answers a ring from the page."""
    card = fake_sound_card(tmp_path / "card")
    daemon = start_daemon(WITH_SPEAKER, env=card.env)
    port = rtsp_port(daemon)
    viewer_token = open_store(daemon.state_dir).create_token("nvr", "viewer", None)
    async with RtspClient(port, "/live", "nvr", viewer_token) as viewer:
        status, headers = await viewer.request("DESCRIBE", viewer.url, Require=REQUIRE)
        assert status == 551 and headers["unsupported"] == REQUIRE
    assert "nvr asked for the back-channel, which needs the admin role" in daemon.log()
    async with RtspClient(port, "/live") as nvr:
        status, _ = await nvr.request("DESCRIBE", nvr.url, Require=REQUIRE)
        assert status == 200
        status, answer = await nvr.request(
            "SETUP", f"{nvr.url}/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
        )
        nvr.session = answer["session"].split(";")[0]
        status, answer = await nvr.request(
            "SETUP", f"{nvr.url}/trackID=1", Transport="RTP/AVP/TCP;unicast;interleaved=2-3"
        )
        assert status == 200 and "interleaved=2-3" in answer["transport"]
        assert (await nvr.request("PLAY", nvr.url))[0] == 200
        tone = tone_payloads(1000.0, 8.0)
        talking = asyncio.create_task(nvr.talk(2, 0, tone))
        await asyncio.to_thread(wait_for, daemon, "talkback: admin (NVR) has the floor")
        deadline = time.monotonic() + 10
        while speaker_tone(card)[1] < 16000:  # a second of it heard
            assert time.monotonic() < deadline, speaker_tone(card)
            await asyncio.sleep(0.2)
        tone_played, _ = speaker_tone(card)
        assert abs(tone_played - 1000.0) < 15, tone_played
        async with WhepViewer(daemon.access, channel_label="peercam") as page:
            assert page.channel is not None
            await page.channel.opened()
            heard_before = len(card.played())
            await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST")
            await page.channel.next({"type": "ring"})
            answered = await page.channel.command("answer")
            assert answered["ok"], answered
            assert "talkback: admin (NVR) gives way to admin, who answered" in daemon.log()
            await talking  # seconds more of the tone, sent after the answer
            assert (await page.channel.command("hangup"))["ok"]
    # What the speaker played from the ring on (the ring-back cue, the call's
    # silence) has none of the NVR's tone in it. (If the speaker was opened anew,
    # the file PCM started again: then all of it is from after.)
    played = card.played().astype(np.float64)
    after = played[heard_before + 16000 // 2 :] if len(played) > heard_before else played
    assert len(after) > 16000, len(after)
    assert share_at(after, 1000.0) < 0.05, share_at(after, 1000.0)
