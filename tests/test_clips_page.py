"""Event clips through the real daemon: the API (roles, Range, bad ids), snapshots,
motion from the moving test pattern, and the page listing, playing and deleting."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
from typing import Any

import av
import pytest

from tests.access import bearer
from tests.browser import chromium, open_page, wait_js
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_auth import status_of, token

RECORDING = """
[camera]
source = "test"
size = "320x240"
fps = 30
[video]
keyframe_interval = 1.0
[recording]
enabled = true
preroll_seconds = 1.0
post_seconds = 1.5
"""


def events(daemon: DaemonProcess) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(daemon.access.urlopen("/api/events"))
    return body


def wait_for_clip(
    daemon: DaemonProcess, clip_id: str | None = None, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for clip in events(daemon)["clips"]:
            if clip_id is None or clip["id"] == clip_id:
                return dict(clip)
        time.sleep(0.3)
    raise AssertionError(f"no clip {clip_id or ''} listed in {timeout} s:\n{daemon.log()[-3000:]}")


def record_now(daemon: DaemonProcess) -> str:
    deadline = time.monotonic() + 10
    while True:  # the encoder's first keyframe may still be on its way
        try:
            return str(json.loads(daemon.access.urlopen("/api/events", method="POST"))["id"])
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def picture_size(jpeg: bytes) -> tuple[int, int]:
    assert jpeg[:2] == b"\xff\xd8"
    with av.open(io.BytesIO(jpeg), mode="r") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


async def test_clip_api_roles_range_and_bad_ids(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(RECORDING)
    clip_id = record_now(daemon)
    clip = wait_for_clip(daemon, clip_id)
    assert clip["trigger"] == "manual" and clip["has_audio"] is True
    assert clip["video"] == f"/api/clips/{clip_id}"
    listing = events(daemon)
    assert listing["recording"] is True
    storage = listing["storage"]
    assert 0 < storage["used"] <= storage["quota"] and storage["free"] > 0

    viewer = daemon.access.with_headers(bearer(token(daemon, "family", "viewer")))
    # A viewer watches clips, but neither records nor deletes them.
    assert viewer.urlopen(clip["video"])[4:8] == b"ftyp"
    for method, path in (("POST", "/api/events"), ("DELETE", clip["video"])):
        status, _, body = await status_of(viewer, method, path, viewer.headers)
        assert (status, body) == (403, f"{method} {path} needs the admin role\n")

    # Seeking: a Range request gets exactly its bytes.
    ranged = daemon.access.with_headers({**daemon.access.headers, "Range": "bytes=0-99"})
    async with ranged.session() as http, http.get(daemon.base + clip["video"]) as response:
        assert response.status == 206
        assert response.headers["Content-Range"].startswith("bytes 0-99/")
        head = await response.read()
    assert len(head) == 100 and head[4:8] == b"ftyp"
    async with (
        daemon.access.session() as http,
        http.get(daemon.base + clip["video"] + "?download") as saved,
    ):
        assert saved.headers["Content-Disposition"] == (
            f'attachment; filename="peercam-{clip_id}.mp4"'
        )
        assert (await saved.read())[4:8] == b"ftyp"
    assert picture_size(daemon.access.urlopen(clip["picture"])) == (320, 240)
    assert picture_size(daemon.access.urlopen("/snapshot.jpg")) == (320, 240)

    for path in (
        "/api/clips/..%2F..%2Fetc%2Fpasswd",
        "/api/clips/nope",
        "/api/clips/nope/picture.jpg",
    ):
        status, _, body = await status_of(daemon.access, "GET", path, daemon.access.headers)
        assert status == 404 and "Traceback" not in body, (path, status, body)
    status, _, _ = await status_of(
        daemon.access, "DELETE", "/api/clips/nope", daemon.access.headers
    )
    assert status == 404

    async with daemon.access.session() as http, http.delete(daemon.base + clip["video"]) as gone:
        assert gone.status == 204
    assert events(daemon)["clips"] == []
    assert (await status_of(daemon.access, "GET", clip["video"], daemon.access.headers))[0] == 404


async def test_without_recording_snapshots_still_work_and_recording_is_refused(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()  # recording off: nobody watches, nothing runs
    assert daemon.metric("peercam_encoder_running", codec="h264") == 0
    assert picture_size(daemon.access.urlopen("/snapshot.jpg")) == (640, 480)
    listing = events(daemon)
    assert listing["recording"] is False and listing["clips"] == []
    status, _, body = await status_of(daemon.access, "POST", "/api/events", daemon.access.headers)
    assert status == 409 and "recording.enabled" in body
    # The picture's encoder stops again once the snapshot is taken.
    deadline = time.monotonic() + 10
    while daemon.metric("peercam_encoder_running", codec="h264") != 0:
        assert time.monotonic() < deadline, "the encoder kept running after the snapshot"
        await asyncio.sleep(0.2)


def test_motion_in_the_picture_records_a_motion_clip(start_daemon: StartDaemon) -> None:
    # The test pattern's square moves all the time: one event, then motion that goes
    # on extends its clip up to max_seconds.
    daemon = start_daemon(
        RECORDING.replace("[recording]", "[recording]\nmax_seconds = 5.0")
        + "[motion]\nenabled = true\ncooldown_seconds = 600\n"
    )
    clip = wait_for_clip(daemon, timeout=30)
    assert clip["trigger"] == "motion"
    assert clip["triggers"] == ["motion"]
    # Without the extension: at most pre-roll + one keyframe interval + post, 3.5 s.
    assert 4.5 < clip["duration"] <= 5.0 + 0.1
    assert "motion" in daemon.log()


@pytest.mark.timeout(180)
def test_the_page_lists_plays_and_deletes_a_clip(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(RECORDING)
    with chromium() as browser:
        page = browser.new_page()
        open_page(page, daemon.base, "/")
        page.click("#toggle-clips")
        wait_js(page, "!document.getElementById('record-now').hidden", timeout=10_000)
        # Recorded from the page; the list updates when the push channel says so.
        deadline = time.monotonic() + 10
        while True:
            page.click("#record-now")
            page.wait_for_timeout(300)
            if "Recording a clip" in page.locator("#notice").inner_text():
                break
            assert time.monotonic() < deadline, page.locator("#notice").inner_text()
        wait_js(page, "document.querySelectorAll('#clip-list .clip').length === 1", 20_000)
        item = page.locator("#clip-list .clip").first
        assert "Recorded by hand" in item.inner_text()
        assert "MB free" in page.locator("#clip-storage").inner_text()
        clip_id = item.get_attribute("data-id")
        assert (
            item.locator("img").evaluate("(img) => img.decode().then(() => img.naturalWidth)")
            == 320
        )
        item.locator("button.play").click()
        wait_js(page, "document.getElementById('clip-player').ended === true", 20_000)
        played = page.evaluate("document.getElementById('clip-player').duration")
        clip = wait_for_clip(daemon, clip_id)
        assert played == pytest.approx(clip["duration"], abs=0.2)
        page.on("dialog", lambda dialog: dialog.accept())
        item.locator("button.delete").click()
        wait_js(page, "document.querySelectorAll('#clip-list .clip').length === 0", 10_000)
        assert not page.locator("#no-clips").is_hidden()
    assert events(daemon)["clips"] == []
    # A viewer's page lists and plays clips but offers no delete and no record.
    wait_for_clip(daemon, record_now(daemon))
    with chromium() as browser:
        viewer = browser.new_page()
        viewer.set_extra_http_headers(bearer(token(daemon, "family", "viewer")))
        viewer.goto(daemon.base + "/")
        wait_js(viewer, "document.body.dataset.role === 'viewer'", 10_000)
        viewer.click("#toggle-clips")
        wait_js(viewer, "document.querySelectorAll('#clip-list .clip').length === 1", 10_000)
        assert viewer.locator("#clip-list .clip button.play").count() == 1
        assert viewer.locator("#clip-list .clip button.delete").count() == 0
        assert viewer.locator("#record-now").is_hidden()
