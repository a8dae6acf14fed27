"""The benchmark's measuring instruments, kept honest by `make test`: the time code
burned into the test pattern is read back off frames Chromium presents, and the
receivers count frames and bytes per viewer. (The figures themselves are `make
bench`'s, never asserted here.)"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
import pytest
from bench import cpu_in_turns, sip_delays
from bench.cpu_per_viewer import Receivers, Sample, SystemRun, sample
from bench.glass_to_glass import BROWSER_FLAGS, READER, measure, reader_arguments
from bench.systems import Running, main_thread_seconds, peercam

from peercam.capture import timecode
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


# A still picture (grey bytes, base64) played as a 30 fps video, as a layer's would be.
STILL_VIDEO = """
([width, height, grey]) => {
  const bytes = Uint8Array.from(atob(grey), (c) => c.charCodeAt(0));
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext('2d');
  const image = context.createImageData(width, height);
  bytes.forEach((value, i) => image.data.set([value, value, value, 255], 4 * i));
  // Painted before the stream starts, so that no frame of it can be the blank canvas.
  context.putImageData(image, 0, 0);
  setInterval(() => context.putImageData(image, 0, 0), 33);
  const video = document.createElement('video');
  video.id = 'video'; video.muted = true; video.autoplay = true;
  video.srcObject = canvas.captureStream(30);
  document.body.append(video);
}
"""


def test_the_time_code_is_read_off_a_smaller_layers_frames() -> None:
    """A 1280-wide camera's code shown at 640 (a low layer): read at the camera's
    block layout, scaled, it gives back exactly the time burned in."""
    import base64

    luma = np.full((720, 1280), timecode.BLACK, np.uint8)
    captured = int(time.time() * 1000) - 100
    timecode.burn(luma, captured)
    half = luma.reshape(360, 2, 640, 2).mean(axis=(1, 3)).astype(np.uint8)
    grey = base64.b64encode(half.tobytes()).decode()
    with chromium(BROWSER_FLAGS) as browser:
        page = browser.new_page()
        page.set_content("<title>a low layer</title>")
        page.evaluate(STILL_VIDEO, [640, 360, grey])
        page.evaluate(READER, reader_arguments(1280))
        time.sleep(2)
        read = page.evaluate("window.g2g")
        elapsed_ms = time.time() * 1000 - captured
    assert read["widths"] == {"640": len(read["shown"]) + read["unreadable"]}, read["widths"]
    assert len(read["shown"]) > 10 and read["unreadable"] == 0, read
    # Each reading is now minus the burned time: 100 ms and up, never beyond the test
    # (but for the last frames' expectedDisplayTime, which may lie a few display
    # frames ahead of the clock read after them: 100 ms allowed).
    # (Read as if burned at 640, no frame reads: row 8 is below the halved code, and
    # the blocks drift a whole block off by the 14th.)
    wrong = [value for value in read["shown"] if not 100 <= value <= elapsed_ms + 100]
    assert not wrong, (wrong[:5], elapsed_ms)


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
    assert measured.relay_cpu_percent is not None
    assert 0 < measured.relay_cpu_percent <= measured.cpu_percent
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


def test_the_slope_per_viewer_carries_its_standard_error_and_the_relaying_part_alone() -> None:
    """Least squares over the full-rate counts: 10, 12, 13, 16 % at 1-4 viewers lie about
    y = 8 + 1.9 x with residuals 0.1, 0.2, -0.7, 0.4, so the slope's standard error is
    sqrt(0.70 / 2 / 5). A count below full rate is left out of both; the relaying
    part's slope is its own."""

    def at(viewers: int, cpu: float, relay: float | None, fps: float = 30) -> Sample:
        return Sample(viewers, cpu, 150, 10, 1600, fps, None, relay)

    run = SystemRun(
        "Janus",
        [at(1, 10, 2), at(2, 12, 2.5), at(3, 13, 3), at(4, 16, 3.5), at(5, 90, 9, fps=20)],
    )
    assert run.per_extra_viewer() == pytest.approx(1.9)
    assert run.slope_error() == pytest.approx(math.sqrt(0.70 / 2 / 5))
    assert run.per_extra_viewer(relay_only=True) == pytest.approx(0.5)
    assert run.slope_error(relay_only=True) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(SystemRun("two", [at(1, 10, 1), at(2, 11, 1)]).slope_error())
    # A count with viewers moved off the main layer is left out too.
    run.samples.append(Sample(6, 5, 150, 10, 600, 30, None, 1, below_main=3))
    assert run.per_extra_viewer() == pytest.approx(1.9)
    unmeasured = SystemRun("aiortc", [at(1, 10, None), at(2, 12, None), at(3, 13, None)])
    assert math.isnan(unmeasured.per_extra_viewer(relay_only=True))


def test_a_stall_is_time_on_a_picture_held_too_long_edges_included() -> None:
    from bench.constrained_viewer import stalls

    steady = [1000.0 + 25 * i for i in range(41)]  # 1 s at 40 fps, from 1000 ms
    assert stalls(steady, 1000, 2000) == pytest.approx((0.0, 0.025))
    # A picture held 500 ms mid-window, and the last one shown 250 ms before the end:
    # both count; the frames between them do not.
    held = [t for t in steady if t <= 1200 or 1700 <= t <= 1750]
    assert stalls(held, 1000, 2000) == pytest.approx((0.75, 0.5))
    # Nothing shown at all: the whole window, not zero (Chromium's freezeCount says 0).
    assert stalls([], 1000, 2000) == (1.0, 1.0)
    assert stalls([400.0, 2500.0], 1000, 2000) == (1.0, 1.0)  # outside the window


def test_the_sip_bench_finds_a_click_in_a_packet_and_dates_it_at_the_phones_microphone() -> None:
    """bench/sip_delays.py: a click 40 samples into a PCMU packet is found there; an
    ideal phone had it at its microphone the rest of the frame (120 samples = 15 ms)
    before the packet; packets to other ports, and one without a click, are passed over."""
    encoder = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 8000, "mono", "s16"
    encoder.open()

    def packet(samples: np.ndarray[Any, Any], sequence: int) -> bytes:
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = 8000
        payload = b"".join(bytes(p) for p in encoder.encode(frame))
        return bytes([0x80, 0]) + sequence.to_bytes(2, "big") + bytes(8) + payload

    quiet = np.zeros(160, dtype=np.int16)
    click = quiet.copy()
    click[40:80] = 30_000
    datagrams = [
        sip_delays.Datagram(1000.0, 41000, 5000, packet(quiet, 1)),
        sip_delays.Datagram(1020.0, 41000, 5000, packet(click, 2)),
        sip_delays.Datagram(1020.0, 5000, 41000, packet(click, 3)),  # the other way
    ]
    assert sip_delays.click_offset(datagrams[1].payload, sip_delays.pcmu_decoder()) == 40
    from_phone = sip_delays.first_clicks(datagrams, lambda d: d.source_port == 41000, True)
    assert from_phone == [pytest.approx(1005.0)]
    arrivals = sip_delays.first_clicks(datagrams, lambda d: d.source_port == 41000, False)
    assert arrivals == [1020.0]


def test_turns_swap_the_order_every_round_and_each_round_has_its_own_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ABBA: peercam first in odd rounds, Janus first in even ones, each system started
    afresh for every sweep; a round's ratio is its two slopes'. The highest ratio is the
    one reported against the target, and a round without a slope makes it unknown."""

    started: list[str] = []
    slopes = {"peercam": [0.2, 0.3, 0.25, float("nan")], "janus": [0.5, 0.4, 0.5, 0.5]}

    @contextmanager
    def start(system: str) -> Iterator[Any]:
        started.append(system)
        yield system

    def measure(running: Any, counts: list[int], window: float, fps: int) -> SystemRun:
        slope = slopes[running][sum(1 for s in started if s == running) - 1]
        return SystemRun(running, [Sample(n, 5 + slope * n, 100, 10, 1500, fps) for n in counts])

    monkeypatch.setattr(cpu_in_turns, "measure", measure)
    turns = cpu_in_turns.in_turns(start, "peercam", "janus", "640x480", 3, [1, 10, 20], 8, 30)
    assert started == ["peercam", "janus", "janus", "peercam", "peercam", "janus"]
    assert [r.first for r in turns.rounds] == ["peercam", "janus", "peercam"]
    assert turns.ratios() == pytest.approx([0.4, 0.75, 0.5])
    assert turns.worst() == pytest.approx(0.75)
    assert turns.median() == pytest.approx(0.5)
    assert math.isnan(turns.worst(relay_only=True))  # no relaying figures measured
    turns = cpu_in_turns.in_turns(start, "peercam", "janus", "640x480", 1, [1, 10, 20], 8, 30)
    assert math.isnan(turns.worst())  # peercam's fourth sweep had no slope
    # A slope the scatter could have made (0.1 ± 0.1 here) is no denominator.
    noisy = SystemRun(
        "janus", [Sample(n, y, 100, 10, 1500, 30) for n, y in ((1, 5), (2, 5.3), (3, 5.2))]
    )
    assert noisy.per_extra_viewer() == pytest.approx(0.1)
    assert noisy.slope_error() > 0.05
    ours = SystemRun("peercam", [Sample(n, 5 + 0.05 * n, 100, 10, 1500, 30) for n in (1, 2, 3)])
    assert math.isnan(cpu_in_turns.Round(1, "peercam", ours, noisy).ratio())
    clean = SystemRun("janus", [Sample(n, 5 + 0.1 * n, 100, 10, 1500, 30) for n in (1, 2, 3)])
    assert cpu_in_turns.Round(1, "peercam", ours, clean).ratio() == pytest.approx(0.5)


def test_anonymous_memory_is_what_the_system_allocated_within_its_rss() -> None:
    """Beside RSS, its anonymous part: 64 MiB written by this process show in it, and it
    is never more than RSS (which also counts library pages mapped from files)."""
    running = Running("this process", [psutil.Process()], lambda page: None, "", "", [])
    before = running.anonymous_mb()
    block = b"\x01" * (64 * 2**20)
    grown = running.anonymous_mb() - before
    assert 60 <= grown <= 70, grown
    assert running.anonymous_mb() <= running.rss_mb()
    del block
