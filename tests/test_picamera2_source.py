"""The Pi camera path, through a stand-in for picamera2 (tests/standins/README.md)
that gives real libx264 H.264 and records every call it receives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from peercam.capture import timecode
from tests.browser import chromium, open_page, wait_for_stats
from tests.conftest import StartDaemon
from tests.whep_viewer import WhepViewer

STANDINS = str(Path(__file__).parent / "standins")

PI_CAMERA = """
[camera]
source = "{source}"
size = "{size}"
fps = {fps}
rotation = 180
[video]
keyframe_interval = 10.0
"""


def standin_env(log: Path, platform: str = "VC4") -> dict[str, str]:
    return {
        "PYTHONPATH": STANDINS,
        "PICAMERA2_STANDIN_LOG": str(log),
        "PICAMERA2_STANDIN_PLATFORM": platform,
    }


def config(source: str = "picamera2", size: str = "640x480", fps: int = 30) -> str:
    return PI_CAMERA.format(source=source, size=size, fps=fps)


def test_hardware_h264_reaches_chromium_and_keyframe_requests_reach_the_encoder(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    log = tmp_path / "picamera2.log"
    daemon = start_daemon(config(source="auto"), env=standin_env(log))
    daemon_log = daemon.log()
    assert "camera: Pi camera imx708: hardware H.264" in daemon_log  # auto chose it
    with chromium() as browser:
        first = browser.new_page()
        open_page(first, daemon.base, "/?codec=H264")
        stats = wait_for_stats(first, lambda s: s["framesDecoded"] > 30)
        assert stats["codec"] == "H264" and (stats["width"], stats["height"]) == (640, 480)
        calls = log.read_text()
        assert (
            "configure main={'size': (640, 480), 'format': 'YUV420'} "
            "lores={'size': (320, 240), 'format': 'YUV420'}" in calls
        )
        assert "'FrameRate': 30" in calls and "Transform(hflip=1, vflip=1" in calls
        assert "start_encoder bitrate=2500000 repeat=True iperiod=300 framerate=30" in calls
        # The GOP is 10 s: the second viewer starts from a keyframe it asked for.
        forced = calls.count("force_key_frame")
        assert forced >= 1  # the first viewer's request
        second = browser.new_page()
        open_page(second, daemon.base, "/?codec=H264")
        wait_for_stats(second, lambda s: s["framesDecoded"] > 10, timeout=8)
        assert log.read_text().count("force_key_frame") > forced
    assert daemon.metric("peercam_keyframes_total", codec="h264", cause="requested") >= 2
    daemon_log = daemon.log()
    assert "h264 passthrough from picamera2-0 started" in daemon_log
    assert "h264 encoder started" not in daemon_log  # no software encode of H.264
    assert daemon.terminate() == 0
    assert log.read_text().splitlines()[-3:] == ["stop_encoder", "stop", "close"]


async def test_vp8_viewers_get_the_cameras_raw_frames_encoded_once(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(config(size="640x360"), env=standin_env(tmp_path / "p.log"))
    async with WhepViewer(daemon.access, video_codec="video/VP8") as viewer:
        frames = await viewer.video_frames(20)
        picture = frames[-1]
        assert (picture.width, picture.height) == (640, 360)
        # The stand-in pads rows to a 64-byte stride like a real camera; a wrong
        # un-padding would scramble the burned-in time code.
        assert timecode.read(picture.to_ndarray(format="gray").astype(np.uint8)) is not None
    assert "vp8 encoder started" in daemon.log()


async def test_pi5_has_no_hardware_h264_and_encodes_with_libx264(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(config(), env=standin_env(tmp_path / "p.log", platform="PISP"))
    log = daemon.log()
    assert "no hardware H.264 on this board (Pi 5)" in log
    assert "software H.264: libx264" in log
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(10)
    assert "h264 encoder started" in daemon.log()
    assert "start_encoder" not in (tmp_path / "p.log").read_text()


@pytest.mark.parametrize(
    ("size", "fps", "message"),
    [
        ("2560x1440", 30, "beyond the Pi hardware H.264 encoder's limit of 1920x1080"),
        ("1280x720", 60, "camera.fps 60 is beyond the Pi hardware H.264 encoder's limit of 30"),
    ],
)
def test_beyond_the_hardware_encoder_is_an_error_at_start(
    tmp_path: Path, size: str, fps: int, message: str
) -> None:
    path = tmp_path / "peercam.toml"
    path.write_text(config(size=size, fps=fps))
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "run", "--config", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=60,
        env={**standin_env(tmp_path / "p.log"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_picamera2_source_without_picamera2_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "peercam.toml"
    path.write_text(config())
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "run", "--config", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "picamera2 cannot be imported here" in result.stderr


def test_check_reports_cameras_encoders_and_the_auto_choice(tmp_path: Path) -> None:
    import json

    def check(env: dict[str, str] | None) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "peercam", "check", "--json"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        report: dict[str, object] = json.loads(result.stdout)
        return report

    plain = check(None)
    encoders = {e["name"]: e for e in plain["encoders"]}  # type: ignore[attr-defined]
    assert encoders["libx264"]["works"] and encoders["libvpx"]["works"]
    assert encoders["libopus"]["works"]
    # Listed by FFmpeg, but there is no hardware here: the probe's encode shows it.
    assert not encoders["h264_v4l2m2m"]["works"]
    assert "ms CPU per" in encoders["libx264"]["detail"]
    assert plain["camera_choice"]["source"] == "test"  # type: ignore[index]
    assert plain["software_h264"] == "libx264"
    assert {"board", "audio", "gpio", "cameras"} <= plain.keys()

    import os

    with_pi = check({**os.environ, **standin_env(tmp_path / "p.log")})
    assert with_pi["camera_choice"]["source"] == "picamera2"  # type: ignore[index]
    pi = with_pi["cameras"]["picamera2"]  # type: ignore[index]
    assert pi["hardware_h264"] is True
    assert pi["cameras"][0]["Model"] == "imx708"
    assert pi["cameras"][0]["modes"][0]["size"] == [1536, 864]
    text = subprocess.run(
        [sys.executable, "-m", "peercam", "check"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **standin_env(tmp_path / "p.log", platform="PISP")},
    ).stdout  # fmt: skip
    assert "WITHOUT (Pi 5: libx264 instead) hardware H.264" in text
    assert "auto:     Pi camera imx708: no hardware H.264" in text


def test_motion_detection_reads_the_pi_cameras_low_resolution_stream(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # The stand-in's lores stream is a moving test pattern too: motion is found there,
    # while the 640x480 main stream is never copied out for it (hardware H.264 only).
    daemon = start_daemon(
        config() + "[motion]\nenabled = true\n", env=standin_env(tmp_path / "p.log")
    )
    deadline = time.monotonic() + 20
    while "event {'type': 'motion'" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()[-2000:]
        time.sleep(0.3)
    log = daemon.log()
    assert "motion: analysing the camera's low-resolution stream, 320x240" in log
    assert "h264 encoder started" not in log  # nothing encoded in software for it
