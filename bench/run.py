"""`make bench`: peercam side by side with the alternatives, in one run, on this machine.

For each system (bench/systems.py), with audio on as peercam is configured by default:
glass-to-glass latency in Chromium, page load → first frame, and server CPU / RSS /
delivered frame rate as viewers are added; peercam once more with audio off, and how
far its sound trails its picture (bench/audio_latency.py). Prints a table, writes
bench/results/latest.md and two PNG charts next to it.

    python -m bench.run [--quick] [--systems peercam,aiortc,janus,gstreamer]

`--quick` shortens every window (a smoke run of the machinery, not a result).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import metadata
from pathlib import Path

from bench import audio_latency, echo_cancellation, plots
from bench.cpu_in_turns import Turns, in_turns
from bench.cpu_per_viewer import FULL_RATE_FPS, VIEWERS_PER_PROCESS, SystemRun
from bench.cpu_per_viewer import measure as measure_cpu
from bench.glass_to_glass import BROWSER_FLAGS, Latency, alternating, first_frames, trials
from bench.report import RESULTS, percentile
from bench.systems import (
    CPU_ONLY,
    SYSTEMS,
    Running,
    gst_rtsp,
    gst_rtsp_available,
    video_mode,
    why_unavailable,
)

# peercam's targets on this machine (issue 8).
TARGET_P50_MS, TARGET_P95_MS = 35.0, 50.0
TARGET_FIRST_FRAME_MS = 250.0
TARGET_PER_VIEWER_PERCENT = 2.0
TARGET_VIEWERS = 25
TARGET_RSS_AT_10_MB = 150.0
# Audio on (the default) may cost the picture at most this much over audio off; held
# back for lip sync it took two to four times as long (issue 15).
TARGET_AUDIO_ON_OVER_OFF = 1.5
# Page loads for that comparison: each load shows frames at a random phase of the 60 Hz
# display clock (0-16.7 ms), so 3 loads a side differed by 8 ms p50 where 6 a side,
# same daemons, differed by under 1 ms.
AUDIO_PAGES = 10

LATENCY_MATRIX = [
    ("640x480", "H264"),
    ("640x480", "VP8"),
    ("1280x720", "H264"),
    ("1280x720", "VP8"),
]
# Janus and GStreamer relay the daemon's forwarded RTP, which is H.264.
RELAYS = {"janus", "gstreamer"}


@dataclass
class Plan:
    latency_seconds: float
    latency_pages: int
    loads: int
    window: float
    counts: list[int]
    beyond: list[int]
    clicks: int  # each way, for sound against picture
    # peercam and Janus in turns (bench/cpu_in_turns.py): rounds, counts, window.
    turns: tuple[int, list[int], float]


FULL = Plan(60, 3, 20, 8, [1, 2, 5, 10, 20], [25, 30, 35, 40, 50, 60], 30, (4, [1, 10, 20, 30], 8))
QUICK = Plan(6, 2, 3, 3, [1, 2], [3], 5, (2, [1, 2], 2))
# Issue 25's target is per viewer against Janus at these two.
TURNS_MODES = ["640x480", "1280x720"]
TARGET_PER_VIEWER_OVER_JANUS = 0.9


@dataclass
class SystemResults:
    name: str
    latency: list[Latency] = field(default_factory=list)
    first_frame_ms: list[float] = field(default_factory=list)
    cpu: SystemRun | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    # peercam only: the first latency row again with audio off, and sound vs picture.
    audio_off: Latency | None = None
    sound: audio_latency.AudioLatency | None = None
    # peercam only: the same with the echo canceller off, and the canceller's figures.
    sound_without_echo_cancelling: audio_latency.AudioLatency | None = None
    echo: echo_cancellation.EchoFigures | None = None
    # peercam only: the same measurement with RTSP clients (an NVR each) as receivers.
    rtsp_cpu: SystemRun | None = None
    cpu_720p: SystemRun | None = None  # peercam (both senders) and Janus only
    cpu_small: SystemRun | None = None  # the same three, SMALL_MODE
    rtsp_peer_cpu: SystemRun | None = None  # gst-rtsp-server, fed by the daemon


@contextmanager
def started(system: str, size: str, codec: str, audio: bool = True) -> Iterator[Running]:
    with tempfile.TemporaryDirectory(prefix=f"peercam-bench-{system}-") as tmp:
        with SYSTEMS[system](Path(tmp), size, codec, audio) as running:
            time.sleep(2)  # the source and encoder reach their steady state
            yield running


def run_system(system: str, plan: Plan) -> SystemResults:
    from tests.browser import chromium

    results = SystemResults(system)
    reason = why_unavailable(system)
    if reason:
        results.skipped = reason
        print(f"{system}: skipped, {reason}", flush=True)
        return results
    if system in CPU_ONLY:
        size, codec = LATENCY_MATRIX[0]
        beyond = [] if system in TURN_RELAYED_VIEWERS else plan.beyond
        with started(system, size, codec) as running:
            results.name = running.name
            results.notes = running.notes
            results.cpu = measure_cpu(running, plan.counts, plan.window, beyond)
        _measure_cpu_at_720p(system, results, plan)
        return results
    for size, codec in LATENCY_MATRIX:
        if system in RELAYS and codec != "H264":
            continue
        with ExitStack() as stack:
            running = stack.enter_context(started(system, size, codec))
            browser = stack.enter_context(chromium(BROWSER_FLAGS))
            results.name = running.name
            results.notes = running.notes
            if system == "peercam" and (size, codec) == LATENCY_MATRIX[0]:
                # Audio on against off, their pages taking turns; a daemon nobody
                # watches stops encoding, so each page has the machine as alone.
                quiet = stack.enter_context(started(system, size, codec, audio=False))
                latency, results.audio_off = alternating(
                    [running, quiet], browser, size, codec, plan.latency_seconds,
                    max(plan.latency_pages, AUDIO_PAGES),
                )  # fmt: skip
                results.audio_off.system = f"{running.name}, audio off"
                _print_latency(results.audio_off.system, results.audio_off)
            else:
                latency = trials(
                    running, browser, size, codec, plan.latency_seconds, plan.latency_pages
                )
            results.latency.append(latency)
            _print_latency(running.name, latency)
            if (size, codec) == LATENCY_MATRIX[0]:
                loads = first_frames(running, browser, plan.loads)
                results.first_frame_ms = loads
                print(
                    f"  {running.name:<10} first frame p50 {percentile(loads, 50):.0f} ms,"
                    f" p95 {percentile(loads, 95):.0f}",
                    flush=True,
                )
    size, codec = LATENCY_MATRIX[0]
    if system == "peercam":
        results.sound = audio_latency.measure(plan.clicks, size)
        print(*(f"  {line}" for line in audio_latency.summary(results.sound)), sep="\n")
        results.sound_without_echo_cancelling = audio_latency.measure(
            plan.clicks, size, echo_cancellation=False
        )
        results.echo = echo_cancellation.measure()
        print(*(f"  {line}" for line in echo_cancellation.summary(results.echo)), sep="\n")
    with started(system, size, codec) as running:
        results.cpu = measure_cpu(running, plan.counts, plan.window, plan.beyond)
    _measure_cpu_at_720p(system, results, plan)
    if system == "peercam":
        if gst_rtsp_available() is None:
            with tempfile.TemporaryDirectory(prefix="peercam-bench-rtsp-") as tmp:
                with gst_rtsp(Path(tmp), size, codec) as relay:
                    time.sleep(2)
                    results.rtsp_peer_cpu = measure_cpu(relay, plan.counts, plan.window)
        with started(system, size, codec) as running:
            assert running.rtsp_receiver_args is not None
            as_rtsp = replace(
                running, name="peercam, RTSP", receiver_args=running.rtsp_receiver_args
            )
            results.rtsp_cpu = measure_cpu(as_rtsp, plan.counts, plan.window)
    return results


# Issue 25 compares peercam's cost per viewer with Janus's at 720p too, and at the
# size and rate a Pi Zero class board would stream.
CPU_720P = {"peercam", "peercam-aiortc-sender", "janus"}
# Viewers relayed by TURN: the cost per viewer of the path that falls back to aiortc's
# transport, at the usual counts only.
TURN_RELAYED_VIEWERS = {"peercam-turn-udp", "peercam-turn-tcp"}
SMALL_MODE = "320x240@15"


def _measure_cpu_at_720p(system: str, results: SystemResults, plan: Plan) -> None:
    if system in CPU_720P:
        with started(system, "1280x720", "H264") as running:
            results.cpu_720p = measure_cpu(running, plan.counts, plan.window, plan.beyond)
        with started(system, SMALL_MODE, "H264") as running:
            results.cpu_small = measure_cpu(
                running, plan.counts, plan.window, fps=video_mode(SMALL_MODE)[1]
            )


def _print_latency(name: str, latency: Latency) -> None:
    print(
        f"  {name:<10} {latency.size} {latency.codec}: glass-to-glass p50 {latency.p(50):.1f}"
        f" ms, p95 {latency.p(95):.1f}, p99 {latency.p(99):.1f} ({len(latency.shown)} frames,"
        f" {latency.unreadable} unreadable, audio: {latency.audio})",
        flush=True,
    )


def _version(command: list[str]) -> str:
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (output.stdout or output.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def machine() -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = "?"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')

    def package(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; {memory_kb / 2**20:.0f} GiB RAM; no GPU",
        f"- {os_name}, Linux {platform.release()}, Python {platform.python_version()}",
        f"- {_version(['chromium', '--version'])} (headless, software decode)",
        f"- aiortc {package('aiortc')}, PyAV {package('av')} (FFmpeg libx264 / libvpx),"
        f" {_version(['janus', '--version'])}, "
        + _version(["/usr/bin/python3", "-c", "import gi; gi.require_version('Gst', '1.0'); "
                    "from gi.repository import Gst; Gst.init(None); print(Gst.version_string())"]),
        f"- measured {time.strftime('%Y-%m-%d %H:%M %Z')}; servers, Chromium and the receivers"
        " share these cores",
    ]  # fmt: skip


NA = "n/a"


def _fmt(value: float | None, digits: int = 1) -> str:
    return NA if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return NA
    return f"{ours / theirs:.2f}"


def _alone(expected: list[float]) -> str:
    if not expected:
        return NA
    low = min(expected)
    return (
        f"{_fmt(percentile(expected, 50))} / {_fmt(percentile(expected, 95))} /"
        f" {'**' if low <= 0 else ''}{_fmt(low)}{'**' if low <= 0 else ''}"
    )


def _mark(met: bool) -> str:
    return "met" if met else "**missed**"


def report(
    all_results: list[SystemResults], plan: Plan, quick: bool, turns: list[Turns]
) -> list[str]:
    ours = next(r for r in all_results if r.name == "peercam")
    others = [r for r in all_results if r is not ours and r.skipped is None]
    lines = [
        "# peercam benchmark: side by side with the alternatives",
        "",
        "Produced by `make bench` (`python -m bench.run`). "
        + ("**Quick smoke run: windows too short to be a result.**" if quick else ""),
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Systems",
        "",
        "- **peercam**: encode once (libx264 / libvpx in software here), shared packets, its own"
        " viewer page.",
        *(f"- **{r.name}**: {'; '.join(r.notes)}" for r in others),
        *(f"- {r.name}: not measured, {r.skipped}" for r in all_results if r.skipped),
        "",
        "Same test pattern (moving square, noise, burned-in capture time) for all; 1500 kbit/s at"
        " 640x480 and 3000 at 1280x720 where the bitrate is configurable (aiortc's encoder picks"
        " its own). Every system but peercam is viewed through `bench/whep_page.html` with"
        " Chromium's default playout.",
        "",
        "Audio is on for every system, as in peercam's default configuration: the daemon's"
        " 440 Hz test tone, Opus, played by the page (muted) and received by every CPU-test"
        " viewer. peercam encodes it once; aiortc once per viewer; Janus and GStreamer relay"
        " the daemon's forwarded Opus. peercam is measured once more with audio off.",
        "",
        "## 1. Glass-to-glass latency (capture → shown), one viewer",
        "",
        f"{plan.latency_seconds:.0f} s per row, split over {plan.latency_pages} page loads (each"
        " load samples a new phase of Chromium's 60 Hz display clock against the 30 fps"
        " camera). A frame is shown at the later of Chromium's `expectedDisplayTime` and the"
        " wall clock when its `requestVideoFrameCallback` runs (Chromium's expected time alone"
        " can fall before the frame was captured); minus the capture time read off the frame."
        " The same frames by `expectedDisplayTime` alone, as this benchmark read them before,"
        " are beside (a minimum in bold is an impossible figure: shown before captured).",
        "",
        "| system | size | codec | audio | frames | p50 ms | p95 ms | p99 ms |"
        " expectedDisplayTime alone p50 / p95 / min ms | capture → received p50 ms |"
        " audio jitter buffer ms | peercam/system p50 | p95 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in all_results:
        rows = [(result.name, t) for t in result.latency]
        if result.audio_off is not None:
            rows.append((result.audio_off.system, result.audio_off))
        for name, latency in rows:
            mine = next(
                (t for t in ours.latency if (t.size, t.codec) == (latency.size, latency.codec)),
                None,
            )
            ratios = [NA, NA, NA]
            if mine is not None and mine is not latency:
                ratios = [_ratio(mine.p(q), latency.p(q)) for q in (50, 95, 99)]
            lines.append(
                f"| {name} | {latency.size} | {latency.codec} | {latency.audio} |"
                f" {len(latency.shown)} | {_fmt(latency.p(50))} | {_fmt(latency.p(95))} |"
                f" {_fmt(latency.p(99))} | {_alone(latency.expected)} |"
                f" {_fmt(percentile(latency.received, 50))} |"
                f" {_fmt(latency.receiver.get('audioJitterBufferMs'))} | {' | '.join(ratios)} |"
            )
    lines += [
        "",
        "audio: *own stream*, the answer gives audio a media stream id (`a=msid`) of its own"
        " and Chromium plays each track as soon as it can; *lip-synced*, audio and video share"
        " one, and Chromium holds each frame back until the sound of the same moment plays"
        " (so the picture waits for the audio jitter buffer); *none*, no audio reached the"
        " page.",
        "",
        "![latency histogram](latency_histogram.png)",
        "",
    ]
    lines += sound_and_picture(ours)
    lines += echo_section(ours)
    lines += breakdown(ours)
    lines += [
        "## 2. Page load → first frame shown",
        "",
        f"{plan.loads} loads each, 640x480 H.264, logged in already; `performance.now()` at"
        " the first `requestVideoFrameCallback`.",
        "",
        "| system | p50 ms | p95 ms | peercam/system p50 | p95 |",
        "|---|---|---|---|---|",
    ]
    for result in all_results:
        if result.skipped or not result.first_frame_ms:
            continue
        values = result.first_frame_ms
        p50, p95 = percentile(values, 50), percentile(values, 95)
        load_ratios = f"{NA} | {NA}"
        if result is not ours:
            load_ratios = (
                f"{_ratio(percentile(ours.first_frame_ms, 50), p50)} |"
                f" {_ratio(percentile(ours.first_frame_ms, 95), p95)}"
            )
        lines.append(f"| {result.name} | {_fmt(p50, 0)} | {_fmt(p95, 0)} | {load_ratios} |")
    lines += cpu_section(ours, [r for r in all_results if r.skipped is None], plan)
    lines += turns_section(turns, plan)
    lines += rtsp_section(ours, plan)
    lines += targets(ours, turns)
    lines += READING
    return lines


READING = [
    "## Reading these figures",
    "",
    "- peercam sends the playout-delay RTP header extension (0-100 ms,"
    " `webrtc.playout_delay_ms`), and Chromium then shows each frame as soon as it is"
    " decoded. Janus's streaming plugin and webrtcbin could send it too but are measured as"
    " configured by default; aiortc's stock sender cannot. peercam without it: the A/B in"
    " `device/peercam/rtc/playout_delay.py`.",
    "- Janus and GStreamer relay an RTP stream and cannot ask its source for a keyframe: a"
    " new viewer waits for the next natural one (every 2 s here), which is most of their"
    " first-frame time. peercam and aiortc answer a new viewer with a keyframe at once.",
    "- A frame counts as shown at the later of Chromium's `expectedDisplayTime` and the wall"
    " clock when its `requestVideoFrameCallback` runs. With frames rendered at once, the"
    " expected time alone fell up to ~10 ms before the frame was even captured; the callback"
    " runs on the page's main thread, so on a busy machine the figure leans late rather than"
    " impossibly early.",
    "- peercam sends audio and video as separate media streams, so the picture is not held"
    " back for lip sync; aiortc, Janus and GStreamer as they come put both in one stream"
    " (the *audio* column), and Chromium then delays their video to the audio's jitter"
    " buffer.",
    "- A page shows frames on its 60 Hz display clock, whose phase against the 30 fps camera"
    " is fixed for the page's life: the separate humps in the histogram are separate page"
    " loads, and a row's p95 is often one unlucky page.",
    "- The receivers are Python processes sharing the machine's 2 cores with the system"
    " measured: section 3's *limited by* column says, at a count where a viewer fell short,"
    " whether the receivers, the two cores together or the system held it back.",
    "",
]


def sound_and_picture(ours: SystemResults) -> list[str]:
    sound = ours.sound
    if sound is None:
        return []
    return [
        "### peercam: how far the sound trails the picture",
        "",
        "`bench/audio_latency.py`: the microphone is an ALSA device fed clicks at known wall-clock"
        " times; the page hears them on its audio thread (time from WebAudio's output"
        " timestamp) while it reads the picture's time code, over the same seconds.",
        "",
        *audio_latency.summary(sound),
        "",
    ]


def echo_section(ours: SystemResults) -> list[str]:
    if ours.echo is None:
        return []
    lines = [
        "### peercam: echo cancellation",
        "",
        "`bench/echo_cancellation.py`: WebRTC's AEC3 (livekit's binding) behind peercam's"
        " speaker reference and canceller, in a simulated room (tests/room.py).",
        "",
        *echo_cancellation.summary(ours.echo),
    ]
    on, off = ours.sound, ours.sound_without_echo_cancelling
    if on is not None and off is not None and on.microphone and off.microphone:
        lines.append(
            "- microphone → browser with the canceller on (the default with an ALSA microphone):"
            f" p50 {percentile(on.microphone, 50):.0f} ms; off:"
            f" p50 {percentile(off.microphone, 50):.0f} ms"
        )
    return [*lines, ""]


def breakdown(ours: SystemResults) -> list[str]:
    lines = [
        "### Where peercam's time goes (means over each row's frames, ms)",
        "",
        "capture → encoded: the daemon's `peercam_capture_to_encoded_seconds`; encoded →"
        " received: packetizing, SRTP, the socket and the loopback network (capture → last"
        " packet received, from `requestVideoFrameCallback`, minus the first); jitter buffer"
        " and decode: Chromium's getStats; received → shown: the rest of the browser's side"
        " (jitter buffer, decode, compositing, waiting for the next 60 Hz display frame).",
        "",
        "| size | codec | capture → encoded | encoded → received | jitter buffer | decode |"
        " received → shown | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for latency in ours.latency:
        if not latency.shown or not latency.received:
            continue
        received = sum(latency.received) / len(latency.received)
        shown = sum(latency.shown) / len(latency.shown)
        encoded = latency.capture_to_encoded_ms
        lines.append(
            f"| {latency.size} | {latency.codec} | {_fmt(encoded)} |"
            f" {_fmt(received - encoded if encoded is not None else None)} |"
            f" {_fmt(latency.receiver.get('jitterBufferMs'))} |"
            f" {_fmt(latency.receiver.get('decodeMs'))} | {_fmt(shown - received)} |"
            f" {_fmt(shown)} |"
        )
    return [*lines, ""]


def cpu_section(ours: SystemResults, measured: list[SystemResults], plan: Plan) -> list[str]:
    lines = [
        "## 3. Server CPU and RSS as viewers are added (640x480@30 H.264)",
        "",
        "Receivers: aiortc peers in separate processes of at most"
        f" {VIEWERS_PER_PROCESS} viewers each (`bench/receivers.py`; no decoding),"
        " each receiving the audio as well as the video,"
        f" {plan.window:.0f} s per count after 3 s to settle. CPU is % of one core summed over"
        " the system's processes (for Janus and GStreamer, the peercam daemon feeding them is"
        f" included). Counts continue past {plan.counts[-1]} until the slowest viewer gets"
        f" < {FULL_RATE_FPS:.0f} fps. The receivers share the 2 cores with the system; the"
        " last column says which side held a viewer below full rate: for peercam by the"
        " packets it sent each viewer (as many a second as to one viewer: the receivers"
        " fell short), for the others by CPU (a receiving process at >= 90 % of a core,"
        " both cores busy at >= 180 % together, else the system).",
        "",
        "| system | viewers | CPU % | RSS MB | slowest viewer fps | slowest kbit/s |"
        " receivers CPU % (processes) | limited by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in measured:
        if result.cpu is None:
            continue
        for s in result.cpu.samples:
            lines.append(
                f"| {result.name} | {s.viewers} | {s.cpu_percent:.1f} | {s.rss_mb:.0f} |"
                f" {s.slowest_viewer_fps:.1f} | {s.slowest_viewer_kbps:.0f} |"
                f" {s.receivers_cpu_percent:.0f} ({s.receiver_processes}) |"
                f" {result.cpu.limited_by(s)} |"
            )
    moved = [
        (result.name, s.viewers, s.below_main)
        for result in measured
        if result.cpu is not None
        for s in result.cpu.samples
        if s.below_main
    ]
    lines += [
        "",
        "peercam's receivers taken off the main layer by their layer chooser (issue 26), at"
        " the end of a window: "
        + (
            "; ".join(f"{name}, {count} viewers: {below}" for name, count, below in moved)
            if moved
            else "none at any count (every figure above is the main layer's)"
        )
        + ".",
        "",
        "CPU per extra viewer is the least-squares slope over the counts where every"
        " viewer got the full rate on the main layer, ± its standard error (the windows'"
        " scatter about the line); the whole system's processes (a relay's feeding"
        " daemon included) and the relaying part alone"
        " (peercam's event-loop thread, where every viewer's packets are made and sent;"
        " Janus's or GStreamer's own process): the encoders' variation between windows"
        " is noise in the first and absent from the second.",
        "",
        "| system | CPU per extra viewer, % of a core | relaying part alone |"
        " RSS (anonymous) at 10 viewers MB | full-rate viewers (< 29 fps at) | peercam/system per"
        " viewer (whole; relaying part) | RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    assert ours.cpu is not None
    for result in measured:
        run = result.cpu
        if run is None:
            continue
        at_10 = run.at(10)
        ours_10 = ours.cpu.at(10)
        limit = f"< 29 fps at {run.falls_below_at}" if run.falls_below_at else "never below"
        if run.stopped_because:
            limit += f" ({run.stopped_because})"
        ratio_cpu = _slope_ratios(ours.cpu, run)
        ratio_rss = _ratio(ours_10.rss_mb if ours_10 else None, at_10.rss_mb if at_10 else None)
        if result is ours:
            ratio_cpu = ratio_rss = NA
        lines.append(
            f"| {result.name} | {_slope(run)} | {_slope(run, relay_only=True)} |"
            f" {_fmt(at_10.rss_mb if at_10 else None, 0)}"
            f" ({_fmt(at_10.anonymous_mb if at_10 else None, 0)}) | {limit} | {ratio_cpu} |"
            f" {ratio_rss} |"
        )
    for mode, runs in (
        ("1280x720@30", [(r, r.cpu_720p) for r in measured if r.cpu_720p]),
        (SMALL_MODE, [(r, r.cpu_small) for r in measured if r.cpu_small]),
    ):
        lines += _other_mode_table(ours, mode, runs)
    per_packet = [
        f"{result.name} {_fmt(run.us_per_packet(), 1)} µs"
        + (
            f" ({_fmt(run.us_per_packet(relay_only=True), 1)} µs on its event loop alone,"
            f" {_fmt(run.per_extra_viewer(relay_only=True), 2)} % of a core per viewer)"
            if run.us_per_packet(relay_only=True) is not None
            else ""
        )
        for result in measured
        if (run := result.cpu) is not None and run.us_per_packet() is not None
    ]
    if per_packet:
        lines += [
            "",
            "Daemon CPU per RTP packet per extra viewer (the slope above over the packets a"
            " viewer is sent per second, from the daemon's /metrics; the event loop's alone"
            " leaves out the encoders' variation between windows, which the whole"
            " process's slope carries): " + "; ".join(per_packet) + ".",
        ]
    return [*lines, "", "![CPU vs viewers](cpu_vs_viewers.png)", ""]


def turns_section(turns: list[Turns], plan: Plan) -> list[str]:
    if not turns:
        return []
    rounds, counts, window = plan.turns
    lines = [
        "## 3a. peercam against Janus, in turns",
        "",
        "Section 3 sweeps each system once, minutes apart; on this virtual machine both"
        " systems' per-viewer figures have moved by 2-3x between runs an hour apart. Here"
        f" the two take turns, {rounds} rounds of one sweep each ({', '.join(map(str, counts))}"
        f" viewers, {window:.0f} s a count, the same receivers), the order swapped every round"
        " (peercam first, then Janus first, ...), each system started afresh every sweep; each"
        " round's ratio is its own (none where Janus's slope is within two standard errors of"
        " nothing). % of a core per extra viewer ± standard error, whole"
        " system (Janus with its feeding daemon) and relaying part alone (peercam's event"
        " loop; Janus's process).",
        "",
    ]
    for turn in turns:
        lines += [
            f"At {turn.mode} H.264:",
            "",
            f"| round | first | {turn.ours} | relaying | {turn.theirs} | relaying |"
            " ratio (whole) | ratio (relaying) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in turn.rounds:
            lines.append(
                f"| {r.number} | {r.first} | {_slope(r.ours)} | {_slope(r.ours, True)} |"
                f" {_slope(r.theirs)} | {_slope(r.theirs, True)} | {_fmt(r.ratio(), 2)} |"
                f" {_fmt(r.ratio(True), 2)} |"
            )
        lines += [
            "",
            f"Ratio over the rounds: median {_fmt(turn.median(), 2)} (whole),"
            f" {_fmt(turn.median(True), 2)} (relaying); highest {_fmt(turn.worst(), 2)},"
            f" {_fmt(turn.worst(True), 2)}.",
            "",
        ]
    return lines


def _slope(run: SystemRun, relay_only: bool = False) -> str:
    slope = run.per_extra_viewer(relay_only)
    if math.isnan(slope):
        return NA
    error = run.slope_error(relay_only)
    return _fmt(slope, 2) + ("" if math.isnan(error) else f" ± {error:.2f}")


def _slope_ratios(ours: SystemRun, theirs: SystemRun) -> str:
    """peercam's slope over another's: whole systems; relaying parts."""
    whole = _ratio(ours.per_extra_viewer(), theirs.per_extra_viewer())
    relaying = _ratio(ours.per_extra_viewer(True), theirs.per_extra_viewer(True))
    return f"{whole}; {relaying}"


def _other_mode_table(
    ours: SystemResults, mode: str, runs: list[tuple[SystemResults, SystemRun]]
) -> list[str]:
    mine = next((run for result, run in runs if result is ours), None)
    if not runs or mine is None:
        return []
    lines = [
        "",
        f"At {mode} H.264, the same receivers (% of a core per extra viewer ± its standard"
        " error, whole system and relaying part alone as above; where the slowest viewer"
        " fell one frame a second short of the camera's rate):",
        "",
        "| system | CPU per extra viewer | relaying part alone | µs per packet |"
        " full-rate viewers | peercam/system (whole; relaying part) |",
        "|---|---|---|---|---|---|",
    ]
    for result, run in runs:
        limit = (
            f"< {run.full_rate_fps:.0f} fps at {run.falls_below_at}"
            if run.falls_below_at
            else "never below"
        )
        ratio = NA if result is ours else _slope_ratios(mine, run)
        lines.append(
            f"| {result.name} | {_slope(run)} | {_slope(run, relay_only=True)} |"
            f" {_fmt(run.us_per_packet(), 1)} | {limit} | {ratio} |"
        )
    return lines


def rtsp_section(ours: SystemResults, plan: Plan) -> list[str]:
    rtsp, webrtc, peer = ours.rtsp_cpu, ours.cpu, ours.rtsp_peer_cpu
    if rtsp is None or webrtc is None:
        return []
    lines = [
        "### RTSP clients (NVRs) beside WebRTC viewers, the same daemon",
        "",
        "The same measurement with RTSP clients as the receivers (`bench/receivers.py"
        " --rtsp`: DESCRIBE, SETUP video and audio over TCP interleaved, PLAY, read; frames"
        " counted by the RTP marker bit), at the same counts. Both take the one shared"
        " encode; an RTSP client costs the daemon its RTP headers and TCP writes, a WebRTC"
        " viewer SRTP, RTCP feedback and UDP sends as well. Beside them, gst-rtsp-server"
        " (Debian's 1.22) as the RTSP server to compare with: one shared media fed the"
        " daemon's forwarded RTP, its CPU and the daemon's counted (MediaMTX is not"
        " packaged for Debian and cannot be downloaded here).",
        "",
        "| receivers | count | CPU % | RSS MB | slowest fps | slowest kbit/s |",
        "|---|---|---|---|---|---|",
    ]
    runs = [("peercam RTSP", rtsp), ("peercam WebRTC", webrtc)]
    if peer is not None:
        runs.append(("gst-rtsp-server", peer))
    for label, run in runs:
        for s in run.samples:
            if s.viewers > plan.counts[-1]:
                continue
            lines.append(
                f"| {label} | {s.viewers} | {s.cpu_percent:.1f} | {s.rss_mb:.0f} |"
                f" {s.slowest_viewer_fps:.1f} | {s.slowest_viewer_kbps:.0f} |"
            )
    ours_per_client = rtsp.per_extra_viewer()
    lines += [
        "",
        f"CPU per extra RTSP client: {_fmt(ours_per_client, 2)} % of a core; per extra"
        f" WebRTC viewer: {_fmt(webrtc.per_extra_viewer(), 2)} %"
        f" (RTSP/WebRTC {_ratio(rtsp.per_extra_viewer(), webrtc.per_extra_viewer())})."
        + (
            f" Per extra gst-rtsp-server client: {_fmt(peer.per_extra_viewer(), 2)} %"
            f" (peercam/gst-rtsp-server {_ratio(ours_per_client, peer.per_extra_viewer())})."
            if peer is not None
            else " gst-rtsp-server was not measured (not installed)."
        ),
        "",
    ]
    return lines


def targets(ours: SystemResults, turns: list[Turns]) -> list[str]:
    first = next((t for t in ours.latency if (t.size, t.codec) == LATENCY_MATRIX[0]), None)
    run = ours.cpu
    lines = ["## peercam against its targets (640x480@30 H.264 unless said)", ""]
    if first is not None:
        lines.append(
            f"- latency p50 {_fmt(first.p(50))} ms (≤ {TARGET_P50_MS:.0f}):"
            f" {_mark(first.p(50) <= TARGET_P50_MS)}; p95 {_fmt(first.p(95))} ms"
            f" (≤ {TARGET_P95_MS:.0f}): {_mark(first.p(95) <= TARGET_P95_MS)}"
        )
    if first is not None and ours.audio_off is not None:
        on, off = first.p(50), ours.audio_off.p(50)
        held = on <= TARGET_AUDIO_ON_OVER_OFF * off
        lines.append(
            f"- latency p50 with audio on {_fmt(on)} ms against {_fmt(off)} ms off"
            f" (≤ {TARGET_AUDIO_ON_OVER_OFF} times off): {_mark(held)}"
        )
    p50 = percentile(ours.first_frame_ms, 50)
    lines.append(
        f"- first frame p50 {_fmt(p50, 0)} ms (≤ {TARGET_FIRST_FRAME_MS:.0f}):"
        f" {_mark(p50 <= TARGET_FIRST_FRAME_MS)}"
    )
    if run is not None:
        slope = run.per_extra_viewer()
        lines.append(
            f"- CPU per extra viewer {_fmt(slope, 2)} % of a core"
            f" (≤ {TARGET_PER_VIEWER_PERCENT:.0f}): {_mark(slope <= TARGET_PER_VIEWER_PERCENT)}"
        )
        full_rate = max(
            (s.viewers for s in run.samples if s.slowest_viewer_fps >= FULL_RATE_FPS), default=0
        )
        lines.append(
            f"- viewers served at ≥ 29 fps: {full_rate} (≥ {TARGET_VIEWERS}):"
            f" {_mark(full_rate >= TARGET_VIEWERS)}"
        )
        at_10 = run.at(10)
        if at_10 is not None:
            lines.append(
                f"- RSS at 10 viewers {at_10.rss_mb:.0f} MB (≤ {TARGET_RSS_AT_10_MB:.0f}):"
                f" {_mark(at_10.rss_mb <= TARGET_RSS_AT_10_MB)}; of it the daemon's own"
                f" allocations {_fmt(at_10.anonymous_mb, 0)} MB, the rest library pages"
                " mapped, which follow the page cache"
            )
    for turn in turns:
        worst, worst_relaying = turn.worst(), turn.worst(relay_only=True)
        # NaN (a round without a slope) compares false: not met.
        held = (
            worst <= TARGET_PER_VIEWER_OVER_JANUS and worst_relaying <= TARGET_PER_VIEWER_OVER_JANUS
        )
        lines.append(
            f"- CPU per extra viewer against {turn.theirs}'s at {turn.mode}, in turns: at most"
            f" {_fmt(worst, 2)} (whole) and {_fmt(worst_relaying, 2)} (relaying part) in"
            f" {len(turn.rounds)} rounds (≤ {TARGET_PER_VIEWER_OVER_JANUS}): {_mark(held)}"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--systems",
        default="peercam,peercam-aiortc-sender,peercam-turn-udp,peercam-turn-tcp,aiortc,janus,"
        "gstreamer",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    names = args.systems.split(",")
    if "peercam" not in names:
        parser.error("peercam is what the others are compared with")
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    all_results = []
    for name in names:
        print(f"{name}:", flush=True)
        all_results.append(run_system(name, plan))
    turns = []
    if any(n == "janus" and r.skipped is None for n, r in zip(names, all_results, strict=True)):
        print("peercam and janus in turns:", flush=True)
        rounds, counts, window = plan.turns
        for mode in TURNS_MODES:
            turns.append(
                in_turns(
                    partial(started, size=mode, codec="H264"),
                    "peercam",
                    "janus",
                    mode,
                    rounds,
                    counts,
                    window,
                    video_mode(mode)[1],
                )
            )
    args.output.mkdir(parents=True, exist_ok=True)
    measured = [r for r in all_results if r.skipped is None]
    # The figures first: an hour of measuring must not be lost to a plot that fails.
    text = "\n".join(report(all_results, plan, args.quick, turns)) + "\n"
    (args.output / "latest.md").write_text(text)
    print()
    print(text, flush=True)
    plots.cpu_vs_viewers(
        [r.cpu for r in measured if r.cpu is not None],
        args.output / "cpu_vs_viewers.png",
        os.cpu_count() or 1,
    )
    plots.latency_histogram(
        [
            t
            for r in measured
            for t in [*r.latency, *([r.audio_off] if r.audio_off else [])]
            if (t.size, t.codec) == LATENCY_MATRIX[0]
        ],
        args.output / "latency_histogram.png",
    )


if __name__ == "__main__":
    main()
