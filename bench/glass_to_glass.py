"""Glass-to-glass latency in a real browser, read off the picture itself.

The test pattern burns its capture time (wall clock, ms) into the top rows of every
frame (`peercam.capture.timecode`). Headless Chromium plays the stream on the viewer
page; for each frame it presents, `requestVideoFrameCallback` gives the time the frame
is expected on screen, the frame is drawn to a canvas and its code read back. Both
clocks are this machine's, so the difference is capture → display, every stage
included: encode, packetize, send, receive, jitter buffer, decode, render.

    python -m bench.glass_to_glass [--size 640x480] [--codec H264] [--seconds 60]

First part of issue 8: peercam only, one viewer; the alternatives and plots follow.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.cpu_per_viewer import percentile, start_peercam
from peercam.capture import timecode

# Runs in the page: reads each presented frame's code into window.latencies.
READER = """
([blocks, syncLength, dataBits]) => {
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', { willReadFrequently: true });
  window.latencies = [];
  window.unreadable = 0;
  const onFrame = (now, metadata) => {
    const width = metadata.width, height = metadata.height;
    if (canvas.width !== width) { canvas.width = width; canvas.height = height; }
    context.drawImage(video, 0, 0, width, height);
    const row = context.getImageData(0, 8, width, 1).data;  // the code's centre row
    const block = Math.floor(width / (blocks + 2));
    const bits = [];
    for (let i = 0; i < blocks; i++) {
      const x = i * block + Math.floor(block / 2);
      bits.push(row[4 * x + 1] > 125 ? 1 : 0);  // green follows luma most closely
    }
    if (bits[0] === 1 && bits[1] === 0) {
      let millis = 0;
      for (const bit of bits.slice(syncLength)) millis = millis * 2 + bit;
      const shown = performance.timeOrigin + metadata.expectedDisplayTime;
      window.latencies.push(shown - millis);
    } else {
      window.unreadable += 1;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def measure(size: str, codec: str, seconds: float) -> tuple[list[float], int]:
    from tests.browser import chromium, open_page, wait_js

    width = int(size.split("x")[0])
    with tempfile.TemporaryDirectory() as name:
        config = Path(name) / "peercam.toml"
        config.write_text(
            f'[camera]\nsource = "test"\nsize = "{size}"\nfps = 30\n[audio]\nenabled = false\n'
        )
        server, access = start_peercam(config)
        try:
            with chromium() as browser:
                page = browser.new_page()
                open_page(page, access.base, f"/?codec={codec}")
                wait_js(page, f"document.getElementById('video').videoWidth === {width}")
                time.sleep(3)  # past the first keyframe and the jitter buffer's start
                page.evaluate(READER, [timecode.BLOCKS, len(timecode.SYNC), timecode.DATA_BITS])
                time.sleep(seconds)
                latencies = [float(v) for v in page.evaluate("window.latencies")]
                unreadable = int(page.evaluate("window.unreadable"))
        finally:
            server.terminate()
            server.wait(timeout=20)
    return latencies, unreadable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--codec", default="H264", choices=["H264", "VP8"])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    latencies, unreadable = measure(args.size, args.codec, args.seconds)
    if not latencies:
        raise SystemExit(f"no frame's code could be read ({unreadable} frames unreadable)")
    print(
        f"peercam {args.size} {args.codec}: {len(latencies)} frames over {args.seconds:.0f} s, "
        f"{unreadable} unreadable; glass-to-glass ms p50 {percentile(latencies, 50):.1f}, "
        f"p95 {percentile(latencies, 95):.1f}, p99 {percentile(latencies, 99):.1f}, "
        f"mean {statistics.fmean(latencies):.1f}"
    )


if __name__ == "__main__":
    main()
