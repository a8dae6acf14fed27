"""The benchmark's measuring instruments, kept honest by `make test`: the time code
burned into the test pattern is read back off frames Chromium presents, and the
receivers count frames and bytes per viewer. (The figures themselves are `make
bench`'s, never asserted here.)"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from bench.cpu_per_viewer import Receivers, Sample, SystemRun, sample
from bench.glass_to_glass import BROWSER_FLAGS, measure
from bench.systems import main_thread_seconds, peercam

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
        receivers = Receivers(running.receiver_args, per_process=1)
        try:
            receivers.add(2)
            assert receivers.processes == 2
            measured = sample(running, receivers, 2.0)
        finally:
            receivers.close()
    assert measured.viewers == 2  # one in each process, both counted
    assert measured.slowest_viewer_fps > 5 and measured.slowest_viewer_kbps > 50
    assert measured.cpu_percent > 0 and measured.rss_mb > 20
    # The daemon's event loop is part of its CPU, and sends the viewers' packets.
    assert measured.loop_cpu_percent is not None
    assert 0 < measured.loop_cpu_percent <= measured.cpu_percent
    assert measured.packets_per_viewer_s is not None and measured.packets_per_viewer_s > 20


def test_the_main_threads_cpu_is_counted_without_the_other_threads() -> None:
    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before = main_thread_seconds(os.getpid())
    worker = threading.Thread(target=spin, args=(0.5,))
    worker.start()
    worker.join()
    other = main_thread_seconds(os.getpid()) - before
    spin(0.5)
    own = main_thread_seconds(os.getpid()) - before - other
    assert other < 0.2, other
    assert 0.4 < own < 1.0, own


def test_the_side_that_held_a_viewer_back_is_told_by_what_was_sent_or_by_cpu() -> None:
    def at(viewers: int, fps: float, packets: float | None, cpu: float, receivers: float) -> Sample:
        return Sample(viewers, cpu, 150, receivers, 1600, fps, packets, None, 2)

    sent = SystemRun("peercam", [at(1, 30, 230, 25, 4), at(40, 21, 229, 60, 150)])
    assert sent.limited_by(sent.samples[0]) == "none"
    assert sent.limited_by(sent.samples[1]) == "receivers (all sent)"
    short = SystemRun("peercam", [at(1, 30, 230, 25, 4), at(40, 21, 190, 60, 150)])
    assert short.limited_by(short.samples[1]) == "system (sent less)"
    other = SystemRun("Janus", [at(1, 30, None, 20, 4), at(40, 21, None, 90, 95)])
    assert other.limited_by(other.samples[1]) == "both cores busy"
    other.samples[1] = at(40, 21, None, 40, 185)
    assert other.limited_by(other.samples[1]) == "both cores busy"
    other.samples[1] = at(40, 21, None, 40, 120)
    assert other.limited_by(other.samples[1]) == "system (by CPU)"
    other.samples[1] = at(40, 21, None, 20, 130)  # two processes, 65 % each
    assert other.limited_by(other.samples[1]) == "system (by CPU)"
    other.samples[1] = Sample(40, 20, 150, 95, 1600, 21, None, None, 1)
    assert other.limited_by(other.samples[1]) == "receivers (by CPU)"
