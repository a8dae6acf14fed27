"""With audio on (the default), the picture is not held back for the sound.

Chromium keeps tracks that share a media stream id lip-synced, holding video back
until the audio of the same moment plays (measured: two to four times the latency).
The daemon sends audio and video as two streams (rtc/sync_groups.py) and the page
plays both in its one element. What the picture's latency is with audio on against
off is a timing figure and belongs to `make bench` (its targets list the ratio); a
comparison of two latencies here failed on a loaded CI machine without a defect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.glass_to_glass import BROWSER_FLAGS, stream_ids
from bench.systems import peercam

from tests.browser import chromium, wait_for_stats

pytestmark = pytest.mark.timeout(300)

SIZE = "640x480"


def test_audio_and_video_arrive_as_two_streams_and_both_play(tmp_path: Path) -> None:
    with peercam(tmp_path, SIZE, "H264", audio=True) as running, chromium(BROWSER_FLAGS) as browser:
        page = browser.new_page()
        running.open_viewer(page)
        wait_for_stats(page, lambda s: s["framesDecoded"] > 10 and s["audioPackets"] > 20)
        answer = page.evaluate("window.peercam.session.pc.remoteDescription.sdp")
        ids = stream_ids(answer)
        assert set(ids) == {"audio", "video"}, answer
        assert ids["audio"] != ids["video"], answer
        # The page still plays the sound with the picture, in its one element.
        kinds = page.evaluate(
            "document.getElementById('video').srcObject.getTracks().map((t) => t.kind).sort()"
        )
        assert kinds == ["audio", "video"]
        # Both keep flowing: sound and picture advance together after the start.
        before = page.evaluate(STATS)
        page.wait_for_timeout(1500)
        after = page.evaluate(STATS)
        assert after["frames"] > before["frames"], (before, after)
        assert after["samples"] > before["samples"], (before, after)


STATS = """async () => {
    const stats = await window.peercam.session.pc.getStats();
    let frames = 0, samples = 0;
    stats.forEach((r) => {
        if (r.type !== "inbound-rtp") return;
        if (r.kind === "video") frames = r.framesDecoded || 0;
        if (r.kind === "audio") samples = r.totalSamplesReceived || 0;
    });
    return {frames, samples};
}"""
