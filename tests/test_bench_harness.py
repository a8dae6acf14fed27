"""The benchmark's measuring instruments, kept honest by `make test`: the time code
burned into the test pattern is read back off frames Chromium presents, and the
receivers count frames and bytes per viewer. (The figures themselves are `make
bench`'s, never asserted here.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.cpu_per_viewer import Receivers, sample
from bench.glass_to_glass import BROWSER_FLAGS, measure
from bench.systems import peercam

from tests.browser import chromium


def test_the_time_code_is_read_off_every_presented_frame() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        peercam(Path(tmp), "320x240", "H264") as running,
        chromium(BROWSER_FLAGS) as browser,
    ):
        result = measure(running, browser, "320x240", "H264", 2.0)
    assert len(result.shown) > 20, result
    assert result.unreadable == 0
    # Read codes are capture times of this very run: positive, and well under a
    # second old however loaded the machine is (a misread bit is off by 2^k ms).
    assert all(0 < value < 1000 for value in result.shown), sorted(result.shown)[-5:]
    assert len(result.received) == len(result.shown)
    assert result.capture_to_encoded_ms is not None and result.capture_to_encoded_ms > 0
    assert result.receiver["framesDecoded"] > 20


def test_receivers_count_each_viewers_frames_and_bytes() -> None:
    with tempfile.TemporaryDirectory() as tmp, peercam(Path(tmp), "320x240", "H264") as running:
        receivers = Receivers(running.receiver_args)
        try:
            receivers.add(2)
            measured = sample(running, receivers, 2.0)
        finally:
            receivers.close()
    assert measured.viewers == 2
    assert measured.slowest_viewer_fps > 5 and measured.slowest_viewer_kbps > 50
    assert measured.cpu_percent > 0 and measured.rss_mb > 20
