"""A recorded clip played as the camera, through the daemon: H.264 passthrough (with
SPS/PPS sent only once, as many USB cameras do), MJPEG encoded once, and a camera
that disappears and returns while a browser watches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.browser import chromium, open_page, page_stats, wait_for_stats
from tests.conftest import StartDaemon
from tests.media_fixtures import h264_clip, mjpeg_clip
from tests.whep_viewer import WhepViewer


def file_config(path: Path) -> str:
    return f"""
[camera]
source = "file"
file = "{path}"
size = "320x240"
fps = 30
"""


async def test_h264_clip_passes_through_and_late_viewers_decode(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    clip = h264_clip(tmp_path / "camera.h264", 320, 240, 30, seconds=12, gop=30)
    daemon = start_daemon(file_config(clip))
    async with WhepViewer(daemon.access) as first:
        await first.video_frames(10)
        log = daemon.log()
        assert "h264 passthrough from v4l2:" in log
        assert "software H.264" not in log  # nothing encodes H.264 here
        await asyncio.sleep(1.5)  # past the only IDR that carries SPS/PPS in the clip
        async with WhepViewer(daemon.access) as late:
            frames = await late.video_frames(20, within=10)
            assert (frames[-1].width, frames[-1].height) == (320, 240)
    assert daemon.metric("peercam_encoded_frames_total", codec="h264") > 40
    # A clip cannot be asked for keyframes: viewers waited for its own IDRs, and no
    # keyframe is counted as one peercam forced.
    assert daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="new-viewer") >= 2
    assert daemon.metric("peercam_keyframes_total", codec="h264", cause="requested") == 0
    assert daemon.metric("peercam_keyframes_total", codec="h264", cause="natural") >= 3


async def test_mjpeg_clip_is_decoded_and_encoded_once(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    clip = mjpeg_clip(tmp_path / "camera.mkv", 320, 240, 30, seconds=4)
    daemon = start_daemon(file_config(clip))
    async with WhepViewer(daemon.access) as first, WhepViewer(daemon.access) as second:
        await first.video_frames(15)
        await second.video_frames(15)
    log = daemon.log()
    assert "mjpeg, decoded, encoded once" in log
    assert "software H.264: libx264" in log
    assert "h264 encoder started" in log and log.count("h264 encoder started") == 1


def test_camera_gone_and_back_resumes_the_open_page(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    clip = h264_clip(tmp_path / "camera.h264", 320, 240, 30, seconds=2, gop=15)
    daemon = start_daemon(file_config(clip))
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, daemon.base, "/?codec=H264")
        wait_for_stats(page, lambda s: s["framesDecoded"] > 20)
        session = page.evaluate("window.peercam.session.location")
        hidden = clip.rename(tmp_path / "unplugged.h264")  # the camera disappears
        deadline = time.monotonic() + 10
        while "unavailable" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        stalled = page_stats(page)["framesDecoded"]
        time.sleep(1)
        assert page_stats(page)["framesDecoded"] - stalled < 5  # no frames while it is gone
        hidden.rename(clip)  # and comes back
        wait_for_stats(page, lambda s: s["framesDecoded"] > stalled + 30, timeout=20)
        # Same session, same page: no reload, no reconnect.
        assert page.evaluate("window.peercam.session.location") == session
        assert page.evaluate("window.peercam.connects") == 1
