"""Glass-to-glass latency in a real browser, read off the picture itself.

The test pattern burns its capture time (wall clock, ms) into the top rows of every
frame (`peercam.capture.timecode`). Headless Chromium plays the stream; for each frame
it presents, `requestVideoFrameCallback` gives the time the frame is expected on
screen and the time its last packet arrived; the frame is drawn to a canvas and its
code read back. Both clocks are this machine's, so the difference is capture →
display with every stage included, and capture → last packet received splits it into
the sending side and the browser's side. The browser's getStats adds its own
averages (jitter buffer, decode).

A frame counts as shown at the later of Chromium's `expectedDisplayTime` and the wall
clock when its callback runs. When frames are rendered at once (playout-delay 0),
Chromium's expected time can lie up to ~10 ms before the frame was even captured,
while the callback itself never ran less than ~6 ms after capture: the callback runs
as the frame goes to the compositor, so the frame cannot be on screen earlier.

    python -m bench.glass_to_glass [--system peercam] [--size 640x480] [--codec H264]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import percentile
from bench.systems import SYSTEMS, Running
from peercam.capture import timecode

# Chromium hides host addresses behind mDNS names, which neither Janus's nor
# GStreamer's ICE resolves; every system gets the raw addresses, as on a LAN.
BROWSER_FLAGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]

# Runs in the page: reads each presented frame's code into window.g2g, counts the
# frames shown at each width and keeps when each was (wall clock, ms, readable or not).
# Its argument: `reader_arguments`.
READER = """
([blocks, syncLength, codeRows, cameraWidth]) => {
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', { willReadFrequently: true });
  window.g2g = {
    shown: [], received: [], expected: [], unreadable: 0, expectedEarly: 0, widths: {},
    presented: [],
  };
  const onFrame = (now, metadata) => {
    // Taken first: the canvas read below takes milliseconds of its own.
    const calledAt = performance.timeOrigin + performance.now();
    const width = metadata.width, height = metadata.height;
    window.g2g.widths[width] = (window.g2g.widths[width] ?? 0) + 1;
    window.g2g.presented.push(calledAt);
    if (canvas.width !== width) { canvas.width = width; canvas.height = height; }
    context.drawImage(video, 0, 0, width, height);
    // The code was burned at the camera's width; a smaller layer shows it scaled.
    const scale = width / (cameraWidth || width);
    const centre = Math.floor((codeRows / 2) * scale);
    const row = context.getImageData(0, centre, width, 1).data;
    const block = Math.floor((cameraWidth || width) / (blocks + 2));
    const bits = [];
    for (let i = 0; i < blocks; i++) {
      const x = Math.floor((i * block + Math.floor(block / 2)) * scale);
      bits.push(row[4 * x + 1] > 125 ? 1 : 0);  // green follows luma most closely
    }
    if (bits[0] === 1 && bits[1] === 0) {
      let captured = 0;
      for (const bit of bits.slice(syncLength)) captured = captured * 2 + bit;
      const expected = performance.timeOrigin + metadata.expectedDisplayTime;
      if (expected < calledAt) window.g2g.expectedEarly += 1;
      window.g2g.shown.push(Math.max(expected, calledAt) - captured);
      window.g2g.expected.push(expected - captured);
      if (metadata.receiveTime) {
        window.g2g.received.push(performance.timeOrigin + metadata.receiveTime - captured);
      }
    } else {
      window.g2g.unreadable += 1;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""

# The receiver's own averages over the whole session, in ms per frame.
RECEIVER_STATS = """
async () => {
  const pc = window.pc ?? window.peercam?.session?.pc;
  if (!pc) return null;
  let video = null, audio = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s;
  });
  if (!video || !video.framesDecoded) return null;
  const per = (total, count) => (count ? (1000 * total) / count : null);
  return {
    sdp: pc.remoteDescription ? pc.remoteDescription.sdp : '',
    audioPackets: audio ? audio.packetsReceived : 0,
    audioJitterBufferMs: audio
      ? per(audio.jitterBufferDelay, audio.jitterBufferEmittedCount) : null,
    jitterBufferMs: per(video.jitterBufferDelay, video.jitterBufferEmittedCount),
    jitterBufferTargetMs: per(video.jitterBufferTargetDelay, video.jitterBufferEmittedCount),
    decodeMs: per(video.totalDecodeTime, video.framesDecoded),
    processingMs: per(video.totalProcessingDelay, video.framesDecoded),
    framesDropped: video.framesDropped ?? 0,
    framesDecoded: video.framesDecoded,
  };
}
"""


def reader_arguments(camera_width: int = 0) -> list[int]:
    """READER's argument: the code's layout, and the width it was burned at (0: each
    frame's own, for a stream only ever shown at the camera's size)."""
    return [timecode.BLOCKS, len(timecode.SYNC), timecode.ROWS, camera_width]


def stream_ids(sdp: str) -> dict[str, str]:
    """The media stream id of each media section, by kind: `a=msid`'s first field, or
    an older `a=ssrc:N msid:` line's. Chromium lip-syncs the tracks of one stream."""
    ids = {}
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        found = re.search(r"^a=(?:ssrc:\d+ )?msid:(\S+)", section, re.MULTILINE)
        if found:
            ids[section.split(" ", 1)[0]] = found.group(1)
    return ids


def audio_mode(sdp: str, audio_packets: int) -> str:
    """How the page got audio: none, in a stream of its own, or lip-synced to video.
    Chromium puts sections without a stream id into one stream of its own making
    (seen with webrtcbin, whose answers carry them only once media has flowed)."""
    if not audio_packets:
        return "none"
    ids = stream_ids(sdp)
    if ids.get("audio") == ids.get("video"):
        return "lip-synced"
    return "own stream"


@dataclass
class Latency:
    """One trial: per-frame figures in ms, and the receiver's averages."""

    system: str
    size: str
    codec: str
    seconds: float
    shown: list[float] = field(default_factory=list)  # capture → on screen
    received: list[float] = field(default_factory=list)  # capture → last packet in
    unreadable: int = 0
    # Frames whose expectedDisplayTime came before their own callback ran, and
    # capture → expectedDisplayTime alone (what this instrument reported before).
    expected_early: int = 0
    expected: list[float] = field(default_factory=list)
    receiver: dict[str, Any] = field(default_factory=dict)
    capture_to_encoded_ms: float | None = None  # the daemon's own histogram, mean
    audio: str = "none"  # as `audio_mode` says

    def p(self, q: float) -> float:
        return percentile(self.shown, q)


def encoded_so_far(running: Running, codec: str) -> tuple[float, int]:
    """peercam's capture → encoded histogram: (sum of seconds, frames)."""
    if running.daemon_metrics is None:
        return 0.0, 0
    total, count = 0.0, 0
    label = f'{{codec="{codec.lower()}"}}'
    for line in running.daemon_metrics().splitlines():
        if line.startswith(f"peercam_capture_to_encoded_seconds_sum{label}"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"peercam_capture_to_encoded_seconds_count{label}"):
            count = int(float(line.rsplit(" ", 1)[1]))
    return total, count


def measure(running: Running, browser: Any, size: str, codec: str, seconds: float) -> Latency:
    """One trial: a fresh page watches for `seconds` after a 3 s start."""
    from tests.browser import wait_js

    width = int(size.split("x")[0])
    page = browser.new_page()
    try:
        running.open_viewer(page)
        wait_js(page, f"document.getElementById('video').videoWidth === {width}")
        time.sleep(3)  # past the first keyframe and the jitter buffer's start
        page.evaluate(READER, reader_arguments())
        encoded_before = encoded_so_far(running, codec)
        time.sleep(seconds)
        g2g = page.evaluate("window.g2g")
        encoded_after = encoded_so_far(running, codec)
        receiver = page.evaluate(RECEIVER_STATS) or {}
    finally:
        page.close()
    audio = audio_mode(receiver.pop("sdp", ""), int(receiver.get("audioPackets") or 0))
    return Latency(
        system=running.name,
        size=size,
        codec=codec,
        seconds=seconds,
        shown=[float(v) for v in g2g["shown"]],
        received=[float(v) for v in g2g["received"]],
        unreadable=int(g2g["unreadable"]),
        expected_early=int(g2g["expectedEarly"]),
        expected=[float(v) for v in g2g["expected"]],
        receiver=receiver,
        capture_to_encoded_ms=_mean_ms(encoded_before, encoded_after),
        audio=audio,
    )


def _mean_ms(before: tuple[float, int], after: tuple[float, int]) -> float | None:
    frames = after[1] - before[1]
    return 1000 * (after[0] - before[0]) / frames if frames > 0 else None


def trials(
    running: Running, browser: Any, size: str, codec: str, seconds: float, count: int
) -> Latency:
    """`count` trials of `seconds / count` each, pooled. Chromium shows frames on a
    60 Hz clock whose phase against the camera's 30 fps is fixed within a page and
    random between pages; several pages sample that phase instead of betting on one."""
    return alternating([running], browser, size, codec, seconds, count)[0]


def alternating(
    runnings: list[Running], browser: Any, size: str, codec: str, seconds: float, count: int
) -> list[Latency]:
    """`trials` for several systems at once, their pages taking turns: a comparison
    between them is then not skewed by whatever else the machine did meanwhile."""
    results: list[list[Latency]] = [[] for _ in runnings]
    for _ in range(count):
        for running, mine in zip(runnings, results, strict=True):
            mine.append(measure(running, browser, size, codec, seconds / count))
    pairs = zip(runnings, results, strict=True)
    return [_pooled(running.name, mine, seconds) for running, mine in pairs]


def _pooled(name: str, results: list[Latency], seconds: float) -> Latency:
    pooled = Latency(name, results[0].size, results[0].codec, seconds)
    for result in results:
        pooled.shown += result.shown
        pooled.received += result.received
        pooled.unreadable += result.unreadable
        pooled.expected_early += result.expected_early
        pooled.expected += result.expected
    pooled.audio = ", ".join(sorted({result.audio for result in results}))
    keys = {
        key for result in results for key, value in result.receiver.items() if value is not None
    }
    pooled.receiver = {
        key: statistics.fmean(r.receiver[key] for r in results if r.receiver.get(key) is not None)
        for key in keys
    }
    encoded = [r.capture_to_encoded_ms for r in results if r.capture_to_encoded_ms is not None]
    pooled.capture_to_encoded_ms = statistics.fmean(encoded) if encoded else None
    return pooled


def first_frames(running: Running, browser: Any, loads: int) -> list[float]:
    """Navigation → first frame presented, in ms, over `loads` fresh page loads."""
    times = []
    warm = browser.new_page()
    running.open_viewer(warm)  # logs in where needed, as a returning user is
    warm.close()
    for _ in range(loads):
        page = browser.new_page()
        try:
            running.open_viewer(page)
            deadline = time.monotonic() + 15
            value = None
            while value is None and time.monotonic() < deadline:
                value = page.evaluate(running.first_frame_expression)
                time.sleep(0.02)
            if value is not None:
                times.append(float(value))
        finally:
            page.close()
        time.sleep(0.5)
    return times


def main() -> None:
    from tests.browser import chromium

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", default="peercam", choices=sorted(SYSTEMS))
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--codec", default="H264", choices=["H264", "VP8"])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--trials", type=int, default=3, help="pages the seconds are split over")
    parser.add_argument("--no-audio", action="store_true", help="video only")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SYSTEMS[args.system](Path(tmp), args.size, args.codec, not args.no_audio) as running,
        chromium(BROWSER_FLAGS) as browser,
    ):
        result = trials(running, browser, args.size, args.codec, args.seconds, args.trials)
    if not result.shown:
        raise SystemExit(f"no frame's code could be read ({result.unreadable} unreadable)")
    print(
        f"{args.system} {args.size} {args.codec}: {len(result.shown)} frames over "
        f"{args.seconds:.0f} s, {result.unreadable} unreadable, {result.expected_early} shown"
        f" later than Chromium expected; glass-to-glass ms "
        f"p50 {result.p(50):.1f}, p95 {result.p(95):.1f}, p99 {result.p(99):.1f}, "
        f"mean {statistics.fmean(result.shown):.1f}; capture → received p50 "
        f"{percentile(result.received, 50) if result.received else float('nan'):.1f}; "
        f"capture → encoded mean {result.capture_to_encoded_ms}; audio {result.audio};"
        f" receiver {result.receiver}"
    )


if __name__ == "__main__":
    main()
