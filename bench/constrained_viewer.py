"""A viewer whose path carries less than the stream: what each system gives it.

The same 1280x720@30 test pattern (3000 kbit/s where the bitrate is set; peercam's
low layer 640x360 at 500 kbit/s) goes to two viewers at once: an aiortc receiver with
all the room there is (bench/receivers.py, in this namespace), and Chromium behind a
`tc tbf` bucket of `RATE` with a 300 ms queue (bench/narrow_link.py). After the limit
has stood for `SETTLE` seconds, for `WINDOW` seconds: the limited page's decoded frame
rate, frames dropped, freezes (getStats `freezeCount`, `totalFreezesDuration`), what
it received, the widths it showed, glass-to-glass latency read off the picture
(bench/glass_to_glass.py's reader, scaled for a smaller layer); the roomy receiver's
frame rate; the server's CPU.

Systems: peercam (its low layer on, as by default), peercam without layers, aiortc
(an encoder per viewer, whose bitrate follows each viewer's estimate), Janus and
GStreamer webrtcbin (relaying the daemon's one stream). Needs root (a namespace and a
tc limit); prints and writes bench/results/constrained_viewer.md.

    python -m bench.constrained_viewer [--rates 1mbit,300kbit] [--systems peercam,janus]
"""

from __future__ import annotations

import argparse
import itertools
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu_per_viewer import Receivers
from bench.glass_to_glass import READER, reader_arguments
from bench.narrow_link import CHROMIUM, HOST_IP, limit, narrow_link, why_unavailable
from bench.report import percentile, publish
from bench.systems import SYSTEMS, Running
from bench.systems import why_unavailable as system_unavailable

SIZE, CAMERA_WIDTH, MAIN_KBPS = "1280x720", 1280, 3000
# Below the main layer and above the low one; and below even the low one.
RATES = ["1mbit", "300kbit"]
SETTLE, WINDOW = 10.0, 30.0
# A picture that stays longer than this is frozen to a viewer: W3C's freeze is a frame
# held more than max(3 frame times, a frame time + 150 ms), 183 ms at 30 fps.
STALL_MS = 200.0
# glass_to_glass.BROWSER_FLAGS' feature, and two more: a plain page (served by
# Playwright's route, so of no address) that fetches from a 10.x server is to Chromium
# a public page reaching into a private network, which it blocks (Local Network Access,
# formerly Private Network Access; seen as "blocked by CORS policy"). One switch: of
# several --disable-features Chromium keeps the last.
BROWSER_FLAGS = [
    "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks,"
    "BlockInsecurePrivateNetworkRequests"
]
SYSTEM_NAMES = ["peercam", "peercam-without-layers", "aiortc", "janus", "gstreamer"]

# The limited page's video figures, from whichever page it is (peercam's viewer keeps
# its connection under window.peercam, bench/whep_page.html under window.pc).
VIDEO_STATS = """
async () => {
  const pc = window.pc ?? window.peercam?.session?.pc;
  if (!pc) return null;
  let video = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
  });
  if (!video) return null;
  return {
    framesDecoded: video.framesDecoded ?? 0,
    framesDropped: video.framesDropped ?? 0,
    freezeCount: video.freezeCount ?? 0,
    freezeSeconds: video.totalFreezesDuration ?? 0,
    bytesReceived: video.bytesReceived ?? 0,
    packetsLost: video.packetsLost ?? 0,
    keyframes: video.keyFramesDecoded ?? 0,
    at: performance.now() / 1000,
  };
}
"""
# peercam only: the layer the camera says it sends this page, and why.
CAMERA_LAYER = "window.peercam?.cameraStats?.layer ?? null"


@dataclass
class ConstrainedRun:
    system: str
    seconds: float = 0.0
    fps: float = 0.0
    dropped: int = 0
    freezes: int = 0
    freeze_seconds: float = 0.0
    kbps: float = 0.0
    lost: int = 0
    keyframes: int = 0
    widths: dict[int, int] = field(default_factory=dict)  # frames shown at each width
    # From when frames were shown (window's edges included): time spent on pictures
    # held over STALL_MS, and the longest held. Chromium's freezeCount counts a freeze
    # only once a frame ends it, so a stream that shows nothing at all has none.
    stalled_seconds: float = 0.0
    longest_gap: float = 0.0
    shown_ms: list[float] = field(default_factory=list)  # glass-to-glass, per frame
    unreadable: int = 0
    roomy_fps: float = 0.0  # the unlimited receiver, over the same window
    cpu_percent: float = 0.0  # the system's processes, % of one core
    layer: dict[str, Any] | None = None  # peercam: the camera's last word on the layer
    settled_after: float | None = None  # peercam: limit → on the low layer, seconds
    encoders: str = ""  # peercam: which encoders ran during the window
    skipped: str | None = None

    def p(self, q: float) -> float:
        return percentile(self.shown_ms, q)


def _wait_for_video(page: Any, timeout: float) -> None:
    """Until the page has decoded a second of video (no limit on its link yet)."""
    from tests.browser import troubles

    deadline = time.monotonic() + timeout
    while True:
        stats = page.evaluate(VIDEO_STATS)
        if stats is not None and stats["framesDecoded"] > 30:
            return
        if time.monotonic() > deadline:
            state = page.evaluate("(window.pc ?? window.peercam?.session?.pc)?.connectionState")
            raise RuntimeError(
                f"no video within {timeout:.0f} s (connection {state}, video {stats}); "
                f"{troubles(page)}"
            )
        time.sleep(0.25)


def _stats(page: Any) -> dict[str, Any]:
    stats: dict[str, Any] | None = page.evaluate(VIDEO_STATS)
    if stats is None:
        raise RuntimeError("the limited page has no video statistics")
    return stats


def _running_encoders(running: Running) -> str:
    """peercam's encoders running now, from /metrics ("h264, h264/low")."""
    if running.daemon_metrics is None:
        return ""
    names = []
    for line in running.daemon_metrics().splitlines():
        if line.startswith("peercam_encoder_running{") and line.endswith(" 1.0"):
            names.append(line.split('"')[1])
    return ", ".join(sorted(names))


def measure(
    running: Running, browser: Any, rate: str, settle: float, window: float
) -> ConstrainedRun:
    result = ConstrainedRun(running.name)
    receivers = Receivers(running.receiver_args)
    page = browser.new_page()
    try:
        receivers.add(1)
        running.open_viewer(page)
        _wait_for_video(page, 30)
        limit(rate)
        limited_at = time.monotonic()
        while time.monotonic() - limited_at < settle:
            layer = page.evaluate(CAMERA_LAYER)
            if result.settled_after is None and layer and layer.get("layer") == "low":
                result.settled_after = time.monotonic() - limited_at
            time.sleep(0.25)
        page.evaluate(READER, reader_arguments(CAMERA_WIDTH))
        before, frames_before = _stats(page), receivers.frames()
        cpu_before, started = running.cpu_seconds(), time.monotonic()
        start_ms = time.time() * 1000  # the page's clock: performance.timeOrigin + now()
        time.sleep(window)
        after, frames_after = _stats(page), receivers.frames()
        elapsed = time.monotonic() - started
        end_ms = time.time() * 1000
        result.cpu_percent = 100 * (running.cpu_seconds() - cpu_before) / elapsed
        g2g = page.evaluate("window.g2g")
        result.layer = page.evaluate(CAMERA_LAYER)
        result.encoders = _running_encoders(running)
    finally:
        limit(None)
        page.close()
        receivers.close()
    seconds = float(after["at"] - before["at"])
    result.seconds = seconds
    result.fps = (after["framesDecoded"] - before["framesDecoded"]) / seconds
    result.dropped = int(after["framesDropped"] - before["framesDropped"])
    result.freezes = int(after["freezeCount"] - before["freezeCount"])
    result.freeze_seconds = float(after["freezeSeconds"] - before["freezeSeconds"])
    result.kbps = 8 * (after["bytesReceived"] - before["bytesReceived"]) / seconds / 1000
    result.lost = int(after["packetsLost"] - before["packetsLost"])
    result.keyframes = int(after["keyframes"] - before["keyframes"])
    result.widths = {int(width): int(count) for width, count in g2g["widths"].items()}
    presented = [float(v) for v in g2g["presented"]]
    result.stalled_seconds, result.longest_gap = stalls(presented, start_ms, end_ms)
    result.shown_ms = [float(v) for v in g2g["shown"]]
    result.unreadable = int(g2g["unreadable"])
    result.roomy_fps = (frames_after[0] - frames_before[0]) / elapsed
    return result


def stalls(presented_ms: list[float], start_ms: float, end_ms: float) -> tuple[float, float]:
    """(seconds spent on pictures held over STALL_MS, the longest held, seconds) over
    [start, end], from when frames were shown; the picture on screen at the start
    counts from the start, the last one until the end."""
    times = [start_ms, *sorted(t for t in presented_ms if start_ms <= t <= end_ms), end_ms]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    stalled = sum(gap for gap in gaps if gap > STALL_MS)
    return stalled / 1000, max(gaps) / 1000


def run(names: list[str], rate: str, settle: float, window: float) -> list[ConstrainedRun]:
    from tests.browser import chromium

    results = []
    with narrow_link(), chromium(BROWSER_FLAGS, executable=CHROMIUM) as browser:
        for name in names:
            reason = system_unavailable(name)
            if reason:
                print(f"{name}: skipped, {reason}", flush=True)
                results.append(ConstrainedRun(name, skipped=reason))
                continue
            with (
                tempfile.TemporaryDirectory(prefix=f"peercam-bench-{name}-") as tmp,
                SYSTEMS[name](Path(tmp), SIZE, "H264", False, host=HOST_IP) as running,
            ):
                time.sleep(2)  # the source and encoder reach their steady state
                try:
                    result = measure(running, browser, rate, settle, window)
                except RuntimeError as error:  # reported as such; the others still run
                    result = ConstrainedRun(running.name, skipped=f"did not play: {error}")
            print(f"{name}: {summary(result)}", flush=True)
            results.append(result)
    return results


def summary(result: ConstrainedRun) -> str:
    return (
        f"{result.fps:.1f} fps decoded, {result.dropped} dropped, {result.freezes} freezes "
        f"({result.freeze_seconds:.1f} s), {result.stalled_seconds:.1f} s stalled (longest "
        f"{result.longest_gap:.1f} s), {result.kbps:.0f} kbit/s, widths {result.widths}, "
        f"glass-to-glass p50 {result.p(50):.0f} ms p95 {result.p(95):.0f} ms "
        f"({len(result.shown_ms)} read, {result.unreadable} unreadable); roomy viewer "
        f"{result.roomy_fps:.1f} fps; CPU {result.cpu_percent:.0f} %; layer {result.layer}; "
        f"settled after {result.settled_after}; encoders {result.encoders or 'n/a'}"
    )


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.0f}"  # NaN: no frame read


def report(by_rate: dict[str, list[ConstrainedRun]], settle: float, window: float) -> list[str]:
    lines = [
        f"# A viewer behind a narrow link (1280x720@30 H.264, {MAIN_KBPS} kbit/s)",
        "",
        "Produced by `python -m bench.constrained_viewer` (part of `make bench`). One "
        "Chromium behind a `tc tbf` bucket (300 ms queue) on its own veth link and one "
        "aiortc receiver with no limit watch at once. Figures are the limited page's over "
        f"{window:.0f} s, starting {settle:.0f} s after the limit went on; glass-to-glass "
        "is capture → shown read off the picture (frames whose code could not be read, "
        "e.g. half-decoded ones, are not in it). Stalled: time the page held a picture "
        f"over {STALL_MS:.0f} ms (W3C's freeze at 30 fps), from when frames were shown, "
        "the window's edges included; Chromium's own freezeCount counts a freeze only "
        "once a frame ends it. Audio off. The systems run in turn in one session, sharing "
        "the 2 cores with both viewers. peercam's low layer: 640x360 at 500 kbit/s.",
    ]
    for rate, results in by_rate.items():
        lines += ["", *rate_section(rate, results)]
    return lines


def rate_name(rate: str) -> str:
    """A tc rate as people write it: "1mbit" → "1 Mbit/s"."""
    found = re.fullmatch(r"([\d.]+)([km]?)bit", rate)
    if found is None:
        return rate
    return f"{found[1]} {found[2].upper() if found[2] == 'm' else found[2]}bit/s"


def rate_section(rate: str, results: list[ConstrainedRun]) -> list[str]:
    lines = [
        f"## Behind {rate_name(rate)}",
        "",
        "| system | decoded fps | dropped | Chromium's freezes (s) | stalled s (longest) "
        "| kbit/s received | widths shown (frames) | glass-to-glass p50 / p95 ms "
        "| unlimited viewer fps | server CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.system} | skipped: {r.skipped} | | | | | | | | |")
            continue
        widths = ", ".join(f"{w}: {n}" for w, n in sorted(r.widths.items(), reverse=True))
        lines.append(
            f"| {r.system} | {r.fps:.1f} | {r.dropped} | {r.freezes} ({r.freeze_seconds:.1f}) "
            f"| {r.stalled_seconds:.1f} ({r.longest_gap:.1f}) | {r.kbps:.0f} "
            f"| {widths or 'none'} | {_ms(r.p(50))} / {_ms(r.p(95))} "
            f"| {r.roomy_fps:.1f} | {r.cpu_percent:.0f} |"
        )
    lines.append("")
    measured = {r.system: r for r in results if not r.skipped}
    layered = measured.get("peercam")
    if layered is not None:
        lines.append(
            f"- peercam: on the low layer {_seconds(layered.settled_after)} after the limit; "
            f"encoders running in the window: {layered.encoders}; the camera's last word on "
            f"the limited viewer: {layered.layer}"
        )
    single = measured.get("peercam, no layers")
    if layered is not None and single is not None:
        lines.append(
            f"- the low layer's cost: peercam's CPU {layered.cpu_percent:.0f} % with it "
            f"({layered.encoders}) against {single.cpu_percent:.0f} % without "
            f"({single.encoders}), the same two viewers"
        )
    others = [r for r in measured.values() if r.system not in ("peercam", "peercam, no layers")]
    if layered is not None and others and not any(r.fps > 0 for r in others):
        names = ", ".join(r.system for r in others)
        lines.append(f"- {names}: no picture decoded in the window")
    elif layered is not None and others:
        best = min(others, key=lambda r: (r.stalled_seconds, -r.fps))
        lines.append(
            f"- of the others, {best.system} fared best: {best.fps:.1f} fps and "
            f"{best.stalled_seconds:.1f} s stalled against peercam's {layered.fps:.1f} fps "
            f"and {layered.stalled_seconds:.1f} s"
        )
    return lines


def _seconds(value: float | None) -> str:
    return "never within the settling time" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default=",".join(RATES), help="the limited link's tc rates")
    parser.add_argument("--systems", default=",".join(SYSTEM_NAMES))
    parser.add_argument("--settle", type=float, default=SETTLE)
    parser.add_argument("--window", type=float, default=WINDOW)
    args = parser.parse_args()
    reason = why_unavailable()
    if reason:
        print(f"constrained viewer benchmark skipped: {reason}")
        return
    names = args.systems.split(",")
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    by_rate = {rate: run(names, rate, args.settle, args.window) for rate in args.rates.split(",")}
    publish("constrained_viewer.md", report(by_rate, args.settle, args.window))


if __name__ == "__main__":
    main()
