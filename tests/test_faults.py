"""Faults the daemon must ride out without anyone reloading the page: a camera
driver that fails or hangs, and a lossy network with an outage in it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peercam.capture.test_pattern import TestPatternCamera
from tests import netns
from tests.browser import chromium, open_page, page_stats, wait_for_stats, wait_js
from tests.daemon_process import DaemonProcess
from tests.inprocess_daemon import InProcessDaemon, pattern_config
from tests.test_turn_fallback import BROWSER, CAMERA
from tests.whep_viewer import WhepViewer

RESUME_WITHIN = 5.0


def camera_daemon(state_dir: Path) -> InProcessDaemon:
    return InProcessDaemon(pattern_config(state_dir, camera={"stall_timeout": 2}))


class FrameClock:
    """When each video frame reached the viewer."""

    def __init__(self, viewer: WhepViewer) -> None:
        self.arrivals: list[float] = []
        self._task = asyncio.create_task(self._count(viewer))

    async def _count(self, viewer: WhepViewer) -> None:
        track = viewer.tracks["video"]
        while True:
            await track.recv()
            self.arrivals.append(time.monotonic())

    async def first_after(self, moment: float, within: float = 15) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            later = [t for t in self.arrivals if t > moment]
            if later:
                return later[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no video frame within {within} s after the fault")

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def inject(camera: TestPatternCamera, fault: Callable[[], None]) -> dict[str, float]:
    """Make the camera's next capture call `fault` (which raises or blocks) once."""
    original = camera._capture
    state: dict[str, float] = {}

    def capture_once(now: float) -> Any:
        if "at" not in state:
            state["at"] = time.monotonic()
            fault()
        return original(now)

    camera._capture = capture_once  # type: ignore[method-assign]
    return state


async def wait_for_fault(state: dict[str, float]) -> float:
    while "at" not in state:  # noqa: ASYNC110 (set from the camera's thread)
        await asyncio.sleep(0.01)
    return state["at"]


def test_a_failing_or_hung_camera_comes_back_while_the_viewer_stays(tmp_path: Path) -> None:
    with camera_daemon(tmp_path) as daemon:
        assert daemon.daemon is not None
        camera = daemon.daemon.pipeline.source("video")
        assert isinstance(camera, TestPatternCamera)
        asyncio.run(fail_then_hang(daemon, camera))


async def fail_then_hang(daemon: InProcessDaemon, camera: TestPatternCamera) -> None:
    assert daemon.daemon is not None
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(5)
        clock = FrameClock(viewer)

        def fail() -> None:
            raise OSError("the sensor stopped answering")

        failed_at = await wait_for_fault(inject(camera, fail))
        resumed = await clock.first_after(failed_at + 0.2)
        print(f"failed: video back after {resumed - failed_at:.2f} s")
        assert resumed - failed_at < RESUME_WITHIN

        release = threading.Event()

        def hang() -> None:
            release.wait(60)

        hung_at = await wait_for_fault(inject(camera, hang))
        resumed = await clock.first_after(hung_at + 0.2)
        print(f"hung: video back after {resumed - hung_at:.2f} s")
        assert resumed - hung_at < RESUME_WITHIN
        # The same session all along: nothing reconnected.
        assert viewer.pc.connectionState == "connected"
        assert len(daemon.daemon.sessions) == 1
        restarts = daemon.access.urlopen("/metrics").decode()
        assert f'peercam_driver_restarts_total{{driver="{camera.label}"}} 1.0' in restarts
        # The hung call returns at last: its thread leaves, the new one goes on.
        release.set()
        await asyncio.sleep(1)
        drivers = [t for t in threading.enumerate() if t.name == camera.label]
        assert len(drivers) == 1, drivers
        frames = len(clock.arrivals)
        await asyncio.sleep(2)
        # One thread feeding the encoder: about 15 fps, not 30.
        assert 20 <= len(clock.arrivals) - frames <= 36, len(clock.arrivals) - frames
        await clock.close()


def netem_available() -> bool:
    probe = netns.in_ns(
        netns.NET, "tc", "qdisc", "add", "dev", "view1", "root", "netem", "loss", "0%",
        check=False,
    )  # fmt: skip
    if probe.returncode == 0:
        netns.in_ns(netns.NET, "tc", "qdisc", "del", "dev", "view1", "root", check=False)
    return probe.returncode == 0


class LossyLink:
    """Loss on the router between camera and viewer: tc netem where the kernel has it,
    else iptables' statistic match, which drops the same share of packets at random
    (this machine's kernel has no netem)."""

    def __init__(self) -> None:
        self.netem = netem_available()

    def loss(self, percent: int) -> None:
        if self.netem:
            for device in ("view1", "cam1"):
                netns.in_ns(netns.NET, "tc", "qdisc", "replace", "dev", device, "root",
                            "netem", "loss", f"{percent}%")  # fmt: skip
            return
        netns.in_ns(netns.NET, "iptables", "-F", "FORWARD")
        if percent >= 100:
            netns.in_ns(netns.NET, "iptables", "-A", "FORWARD", "-j", "DROP")
        elif percent > 0:
            share = str(percent / 100)
            netns.in_ns(netns.NET, "iptables", "-A", "FORWARD", "-m", "statistic",
                        "--mode", "random", "--probability", share, "-j", "DROP")  # fmt: skip


@pytest.mark.timeout(240)
def test_loss_and_an_outage_heal_without_a_reload(network: None, tmp_path: Path) -> None:
    workdir = tmp_path / "daemon"
    workdir.mkdir()
    daemon = DaemonProcess(workdir, CAMERA, netns=netns.CAM)
    link = LossyLink()
    try:
        with chromium(executable=BROWSER) as browser:
            page = browser.new_page()
            open_page(page, daemon.base, "/")
            wait_for_stats(page, lambda s: s["framesDecoded"] > 30, timeout=30)
            page.evaluate("window.sameDocument = true")
            session = page.evaluate("window.peercam.session.location")

            link.loss(5)
            before = page_stats(page)
            time.sleep(10)
            lossy = page_stats(page)
            decoded = lossy["framesDecoded"] - before["framesDecoded"]
            repairs = (lossy["nackCount"] - before["nackCount"]) + (
                lossy["pliCount"] - before["pliCount"]
            )
            print(f"5 % loss, 10 s: {decoded} frames decoded, {repairs} NACK/PLI sent")
            assert decoded > 10 * 15 * 0.6, lossy  # most frames still shown
            assert repairs > 0, lossy  # and the losses were asked for again

            link.loss(100)
            time.sleep(2)
            link.loss(5)
            cut_end = page_stats(page)["framesDecoded"]
            started = time.monotonic()
            wait_for_stats(page, lambda s: s["framesDecoded"] > cut_end + 30, timeout=20)
            print(f"after a 2 s outage: video flowing again in {time.monotonic() - started:.1f} s")
            link.loss(0)
            # The same page and the same session: nothing reloaded or reconnected.
            wait_js(page, "window.sameDocument === true", timeout=1000)
            assert page.evaluate("window.peercam.session.location") == session
            assert page.evaluate("window.peercam.connects") == 1
    finally:
        daemon.terminate()


def test_finding_the_camera_at_start_is_kept_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probing a camera blocks (libcamera, V4L2 ioctls, an encoder's trial open): the
    event loop, which already answers /healthz, must not wait on it."""
    import peercam.daemon
    from peercam.pipeline import build_pipeline as real

    built_on: list[str] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        built_on.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(peercam.daemon, "build_pipeline", watched)
    with camera_daemon(tmp_path) as daemon:
        assert daemon.daemon is not None
    assert len(built_on) == 1 and built_on[0] != "daemon"  # the loop's thread is "daemon"
