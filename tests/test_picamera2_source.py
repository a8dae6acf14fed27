"""The Pi camera path, through a stand-in for picamera2 (tests/standins/README.md)
that gives real libx264 H.264 and records every call it receives."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from peercam.capture import timecode
from peercam.capture.picamera2_camera import Picamera2Camera, PiCameraSettings, PiCapture
from peercam.media import CapturedEncoded
from tests.browser import chromium, open_page, wait_for_stats
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_rtsp import probe_frames, url
from tests.whep_viewer import WhepViewer

STANDINS = str(Path(__file__).parent / "standins")

PI_CAMERA = """
[camera]
source = "{source}"
size = "{size}"
fps = {fps}
rotation = 180
linger_seconds = {linger}
{camera_extra}
[video]
keyframe_interval = {keyframe_interval}
"""


def standin_env(log: Path, platform: str = "VC4", **more: str) -> dict[str, str]:
    return {
        "PYTHONPATH": STANDINS,
        "PICAMERA2_STANDIN_LOG": str(log),
        "PICAMERA2_STANDIN_PLATFORM": platform,
        **{f"PICAMERA2_STANDIN_{key.upper()}": value for key, value in more.items()},
    }


def config(
    source: str = "picamera2",
    size: str = "640x480",
    fps: int = 30,
    linger: float = 5.0,
    keyframe_interval: float = 10.0,
    camera_extra: str = "",
) -> str:
    return PI_CAMERA.format(
        source=source, size=size, fps=fps, linger=linger,
        keyframe_interval=keyframe_interval, camera_extra=camera_extra,
    )  # fmt: skip


def wait_until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.2)


def viewers(daemon: DaemonProcess) -> int:
    return int(daemon.metric("peercam_viewers"))


def opened(log: Path) -> int:
    return log.read_text().splitlines().count("open camera 0")


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
        assert "configure main=640x480 YUV420 lores=640x360 YUV420" in calls
        # picamera2 turns FrameRate into the frame duration libcamera takes.
        assert "'FrameDurationLimits': (33333, 33333)" in calls
        assert "Transform(hflip=1, vflip=1" in calls
        assert (
            "start_encoder bitrate=2500000 repeat=True iperiod=300 framerate=30 "
            "profile=constrained baseline" in calls
        )
        # The GOP is 10 s. The first viewer opened the camera and starts at the fresh
        # encoder's first IDR; the second starts from a keyframe it asked for.
        forced = calls.count("force_key_frame")
        second = browser.new_page()
        open_page(second, daemon.base, "/?codec=H264")
        wait_for_stats(second, lambda s: s["framesDecoded"] > 10, timeout=8)
        assert log.read_text().count("force_key_frame") > forced
    assert daemon.metric("peercam_keyframes_total", codec="h264", cause="requested") >= 1
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
    assert "motion: analysing the camera's low-resolution stream, 640x360" in log
    assert "h264 encoder started" not in log  # nothing encoded in software for it


def test_the_small_rtsp_stream_is_the_pi_cameras_low_resolution_stream_encoded_once(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """/live/sub comes from the ISP's lores stream (the camera scaled it), encoded
    beside the hardware-encoded main stream, whose pictures never reach Python."""
    daemon = start_daemon(config(), env=standin_env(tmp_path / "p.log"))
    assert "H.264 layer sub: 640x360 at 10 fps, 500 kbit/s, from the camera's low-resolution" in (
        daemon.log()
    )
    data = probe_frames(url(daemon, "/live/sub/noaudio"), "tcp", seconds=2)
    (stream,) = data["streams"]
    assert (stream["codec_name"], int(stream["width"]), int(stream["height"])) == ("h264", 640, 360)
    main = probe_frames(url(daemon, "/live/noaudio"), "tcp", seconds=1)
    assert (int(main["streams"][0]["width"]), int(main["streams"][0]["height"])) == (640, 480)
    log = daemon.log()
    assert "h264/sub encoder started" in log
    assert "h264 encoder started" not in log  # the main stream is the camera's own
    assert opened(tmp_path / "p.log") == 1


# What the real picamera2 does that earlier peercam did not handle (issue 15). Each test
# below fails on the code before the fix: the stand-in now behaves as picamera2 does.


@pytest.mark.parametrize(
    "refreshes",
    [25, pytest.param(100, marks=[pytest.mark.slow, pytest.mark.timeout(600)])],
)
def test_page_refreshes_each_get_video_from_a_camera_opened_once(
    start_daemon: StartDaemon, tmp_path: Path, refreshes: int
) -> None:
    # The camera lingers after the last viewer leaves: a refresh never reopens it.
    log = tmp_path / "p.log"
    # Dozens of sessions from one browser inside a minute exceed the per-client rate
    # limit that is there for exactly that; lifted here.
    limits = "[viewers]\nsessions_per_minute_per_client = 1000\n"
    daemon = start_daemon(config() + limits, env=standin_env(log))
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, daemon.base, "/?codec=H264")
        for _ in range(refreshes):
            wait_for_stats(page, lambda s: s["framesDecoded"] > 0, timeout=10)
            page.reload()
        wait_for_stats(page, lambda s: s["framesDecoded"] > 0, timeout=10)
        assert "close" not in log.read_text().splitlines()
        assert opened(log) == 1, log.read_text()[-500:]
        # The page's own hang-up (pagehide), so the session ends now rather than by
        # ICE consent expiry 30 s later.
        page.close(run_before_unload=True)
        wait_until(lambda: viewers(daemon) == 0, within=15)
    # The linger is not forever: with nobody watching, the camera closes after it.
    wait_until(lambda: "close" in log.read_text().splitlines(), within=15)
    assert "unavailable" not in daemon.log() and "Traceback" not in daemon.log()


async def test_a_viewer_arriving_while_the_camera_closes_waits_for_the_close(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # Without the linger each departure closes the camera, which takes picamera2 most
    # of a second; the next viewer's open must come after that close, not fail on it.
    log = tmp_path / "p.log"
    daemon = start_daemon(config(linger=0), env=standin_env(log))
    for _ in range(6):
        async with WhepViewer(daemon.access) as viewer:
            await viewer.video_frames(3, within=10)
            assert await viewer.hang_up() == 200
    # A viewer may come before the previous one's session has let the camera go, and
    # find it still open; most come while it closes, and open it again.
    assert opened(log) >= 3
    lines = log.read_text().splitlines()
    # Every open follows the previous close.
    opens = [n for n, line in enumerate(lines) if line == "open camera 0"]
    closes = [n for n, line in enumerate(lines) if line == "close"]
    assert all(close < after for close, after in zip(closes, opens[1:], strict=False))
    assert "unavailable" not in daemon.log() and "Traceback" not in daemon.log()


@pytest.mark.parametrize("pi_cameras", [0, 1])
def test_auto_never_takes_a_usb_webcam_for_a_pi_camera(
    start_daemon: StartDaemon, tmp_path: Path, pi_cameras: int
) -> None:
    log = tmp_path / "p.log"
    env = standin_env(log, cameras=str(pi_cameras), usb_cameras="1")
    daemon = start_daemon(config(source="auto"), env=env)
    if pi_cameras:
        assert "camera: Pi camera imx708: hardware H.264" in daemon.log()
    else:
        assert "UVC" not in daemon.log() and "Pi camera" not in daemon.log()
        assert "test pattern" in daemon.log()


def test_picamera2_without_force_key_frame_still_serves_every_viewer(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # picamera2 before 0.3.32 has no force_key_frame(): a new viewer waits for the
    # camera's next natural keyframe instead of breaking.
    log = tmp_path / "p.log"
    env = standin_env(log, version="0.3.31")
    daemon = start_daemon(config(keyframe_interval=1.0), env=env)
    with chromium() as browser:
        first = browser.new_page()
        open_page(first, daemon.base, "/?codec=H264")
        wait_for_stats(first, lambda s: s["framesDecoded"] > 10)
        second = browser.new_page()
        open_page(second, daemon.base, "/?codec=H264")
        wait_for_stats(second, lambda s: s["framesDecoded"] > 10, timeout=10)
    assert "force_key_frame" not in log.read_text()
    assert daemon.log().count("cannot force a keyframe (needs 0.3.32 or later)") == 1
    assert "Traceback" not in daemon.log()


def test_check_opens_each_camera_by_its_position_and_lists_a_usb_one(tmp_path: Path) -> None:
    import os

    log = tmp_path / "p.log"
    env = {**os.environ, **standin_env(log, cameras="2", usb_cameras="1")}
    result = subprocess.run(
        [sys.executable, "-m", "peercam", "check", "--json"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cameras = json.loads(result.stdout)["cameras"]["picamera2"]["cameras"]
    # picamera2's order: Pi cameras first by Id descending, USB last; "Num" is
    # libcamera's own order and is not what Picamera2(n) takes.
    assert [(c["Model"], c["usb"]) for c in cameras] == [
        ("imx219", False), ("imx708", False), ("UVC Camera (046d:0825)", True),
    ]  # fmt: skip
    assert [c["Num"] for c in cameras] == [2, 1, 0]
    assert cameras[0]["modes"][0]["size"] == [640, 480]  # imx219's own modes
    assert cameras[1]["modes"][0]["size"] == [1536, 864]  # imx708's
    assert cameras[2]["modes"] == [
        {"size": None, "fps": None, "format": "MJPEG"},
        {"size": None, "fps": None, "format": "YUYV"},
    ]
    text = subprocess.run(
        [sys.executable, "-m", "peercam", "check"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "#2 UVC Camera (046d:0825) (USB: served through V4L2): MJPEG, YUYV" in text.stdout
    assert "#0 imx219: 640x480@103" in text.stdout


async def test_the_size_libcamera_settles_on_is_the_size_read(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # libcamera may adjust the size asked for; picamera2 writes the real one back.
    # Slicing frames with the requested size raised in post_callback, which ends
    # picamera2's processing thread: no frame of any kind came out after it.
    log = tmp_path / "p.log"
    env = standin_env(log, adjust_main="640x464")
    daemon = start_daemon(config(), env=env)
    async with WhepViewer(daemon.access, video_codec="video/VP8") as viewer:
        frames = await viewer.video_frames(20)
        gray = frames[-1].to_ndarray(format="gray").astype(np.uint8)
        assert timecode.read(gray) is not None
    assert "libcamera gives 640x464 for the 640x480 asked for" in daemon.log()


async def test_a_failing_frame_callback_drops_the_frame_not_the_camera(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # An exception escaping post_callback would end picamera2's processing thread,
    # which also feeds the hardware encoder; a frame that cannot be mapped is dropped.
    log = tmp_path / "p.log"
    daemon = start_daemon(config(), env=standin_env(log, map_failures="5"))
    async with WhepViewer(daemon.access, video_codec="video/VP8") as viewer:
        await viewer.video_frames(20)
    async with WhepViewer(daemon.access, video_codec="video/H264") as viewer:
        await viewer.video_frames(20)
    assert "dropped a camera frame (1 so far)" in daemon.log()


def _camera_modules() -> list[str]:
    return [name for name in sys.modules if name.split(".")[0] in ("picamera2", "libcamera")]


@pytest.fixture
def standin_picamera2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The stand-in imported into this process, and gone again afterwards, so that
    later tests here still find no picamera2."""
    saved = {name: sys.modules.pop(name) for name in _camera_modules()}
    monkeypatch.syspath_prepend(STANDINS)
    monkeypatch.setenv("PICAMERA2_STANDIN_LOG", str(tmp_path / "p.log"))
    try:
        yield importlib.import_module("picamera2")
    finally:
        for name in _camera_modules():
            del sys.modules[name]
        sys.modules.update(saved)


async def test_opening_and_closing_the_camera_never_block_the_event_loop(
    standin_picamera2: ModuleType,
) -> None:
    settings = PiCameraSettings(0, 640, 480, 30, 2_000_000, keyframe_interval=2.0)
    camera = Picamera2Camera(settings, standin_picamera2)
    camera.set_outputs(raw=False, encoded=True)
    first = asyncio.Event()

    def sink(item: PiCapture) -> None:
        if isinstance(item, CapturedEncoded):
            first.set()

    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        started = time.monotonic()
        camera.start(sink)
        await asyncio.wait_for(first.wait(), 15)
        opening = time.monotonic() - started
        stopping_at = time.monotonic()
        await camera.stop()
        stopping = time.monotonic() - stopping_at
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    # picamera2 spends most of a second in each (the stand-in: 0.5 s to open and
    # configure; its encoder's last 400 ms poll, begun up to a frame before the stop,
    # then the listener's 0.2 s); the loop turned all the while.
    assert opening >= 0.5 and stopping >= 0.3, (opening, stopping)
    assert max(gaps) < min(opening, stopping) / 2, max(gaps)
    assert not camera.running


async def test_a_camera_whose_stop_hangs_does_not_hang_the_daemons_shutdown(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # The hardware encoder refusing a frame raises out of picamera2's processing
    # thread, which ends it; picamera2's stop() then waits for that thread forever.
    import signal

    log = tmp_path / "p.log"
    env = standin_env(log, encode_fails_after="45")
    daemon = start_daemon(config(camera_extra="stall_timeout = 120"), env=env)
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(10)
        await asyncio.to_thread(wait_until, lambda: "encode failed" in log.read_text(), 10)
        daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.process.wait, 40)
    assert code == 0
    assert "stop hangs" in log.read_text()
    assert "picamera2 camera 0 did not stop within 10 s; its thread is left behind" in daemon.log()
    assert "stopped cleanly" in daemon.log()


async def test_a_new_size_from_the_settings_page_reopens_the_pi_camera_after_closing_it(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Issue 23: the settings page changes the Pi camera's size while a viewer
    watches. Only the camera and its encoder restart: the viewer stays and gets the
    new size from the hardware encoder, and picamera2's camera is opened again only
    after the old one closed (two opens of one camera fail on a Pi)."""
    log = tmp_path / "p.log"
    daemon = start_daemon(config(), env=standin_env(log))
    async with WhepViewer(daemon.access) as viewer:
        (frame,) = await viewer.video_frames(1, within=10)
        assert (frame.width, frame.height) == (640, 480)
        async with (
            daemon.access.session() as http,
            http.put(
                daemon.access.base + "/api/settings", json={"changes": {"camera.size": "1280x720"}}
            ) as response,
        ):
            answer = await response.json()
            assert response.status == 200 and answer["impact"] == "camera", answer
        deadline = time.monotonic() + 20
        while (frame.width, frame.height) != (1280, 720):
            assert time.monotonic() < deadline, (frame.width, frame.height)
            (frame,) = await viewer.video_frames(1, within=10)
    lines = log.read_text().splitlines()
    opens = [n for n, line in enumerate(lines) if line == "open camera 0"]
    closes = [n for n, line in enumerate(lines) if line == "close"]
    assert len(opens) == 2 and closes and closes[0] < opens[1], lines
    log_text = daemon.log()
    assert "Traceback" not in log_text and "restarting in place" not in log_text
    assert "hardware H.264" in log_text.split("setting camera.size changed")[-1]
