"""Audio latency both ways, measured with clicks whose wall-clock time is known.

The daemon's microphone and speaker are alsa-lib `file` PCMs on FIFOs. Real alsa-lib
then blocks on them as on a sound card, and this benchmark is the card's clock:
- microphone → browser: clicks are written into the microphone FIFO in real time;
  headless Chromium, viewing the page, timestamps each click it hears (WebAudio on
  the received stream). Latency is heard minus written.
- talkback, mouth → ear: the page makes clicks with WebAudio at known times and sends
  them as its Talk track; this benchmark reads the speaker FIFO as the daemon plays
  it. Latency is played minus made.
Both machines' clocks are this machine's. Prints p50/p95; asserts nothing.

While the clicks are heard, the same page reads the picture's burned-in capture time
(bench/glass_to_glass.py), so audio and video latency come from one page over the
same seconds: their difference is how far the sound lags the picture. A click is
heard when Chromium's audio output plays it (WebAudio's output timestamp), a frame is
shown when it goes to the compositor (bench/glass_to_glass.py); the screen's own
delay is in neither.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import os
import statistics
import tempfile
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.glass_to_glass import READER, reader_arguments
from bench.processes import start_peercam
from bench.report import percentile, publish
from bench.systems import bitrate_kbps

RATE = 48_000
BLOCK = 960  # 20 ms
CLICK_EVERY = 1.0

ASOUNDRC = """
pcm.bench_mic {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
pcm.bench_speaker {{ type file slave.pcm "null" file "{speaker}" format "raw" }}
"""

# On the page's audio thread: the context time of each click's first loud sample.
# The main thread may be late by tens of ms (here it also reads every video frame);
# the audio thread is not, and no buffer is skipped.
CLICK_WORKLET = """
class ClickListener extends AudioWorkletProcessor {
  constructor() { super(); this.quietUntil = 0; }
  process(inputs) {
    const samples = inputs[0][0];
    if (samples) {
      for (let i = 0; i < samples.length; i++) {
        const at = currentTime + i / sampleRate;
        if (Math.abs(samples[i]) > 0.2 && at > this.quietUntil) {
          this.port.postMessage(at);
          this.quietUntil = at + 0.5;
          break;
        }
      }
    }
    return true;
  }
}
registerProcessor('click-listener', ClickListener);
"""

# Runs in the page: hears the daemon's audio and notes when each click comes out of
# Chromium's audio output (context time → wall clock through the output timestamp).
LISTEN = """
async (worklet) => {
  const video = document.getElementById('video');
  const context = new AudioContext({ sampleRate: 48000 });
  const url = URL.createObjectURL(new Blob([worklet], { type: 'text/javascript' }));
  await context.audioWorklet.addModule(url);
  const source = context.createMediaStreamSource(video.srcObject);
  const node = new AudioWorkletNode(context, 'click-listener');
  window.heardClicks = [];
  window.heardStages = async () => {
    let audio = null;
    (await window.peercam.session.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s;
    });
    return {
      outputMs: 1000 * (context.baseLatency + context.outputLatency),
      jitterBufferMs: audio && audio.jitterBufferEmittedCount
        ? (1000 * audio.jitterBufferDelay) / audio.jitterBufferEmittedCount : null,
    };
  };
  node.port.onmessage = (event) => {
    const stamp = context.getOutputTimestamp();
    window.heardClicks.push(performance.timeOrigin + stamp.performanceTime +
                            (event.data - stamp.contextTime) * 1000);
  };
  source.connect(node);
  node.connect(context.destination);
}
"""

# Runs in the page: talks clicks, at known times, through the Talk path.
TALK = """
async (count) => {
  const context = new AudioContext({ sampleRate: 48000 });
  const destination = context.createMediaStreamDestination();
  const oscillator = context.createOscillator();
  const gain = context.createGain();
  oscillator.frequency.value = 2000;
  gain.gain.value = 0;
  oscillator.connect(gain).connect(destination);
  oscillator.start();
  await window.peercam.session.audio.sender.replaceTrack(destination.stream.getAudioTracks()[0]);
  const result = await window.peercamDoorbell.command('talk');
  if (!result.ok) throw new Error(result.reason);
  window.madeClicks = [];
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const at = context.currentTime + 0.05;
    const stamp = context.getOutputTimestamp();
    gain.gain.setValueAtTime(0.9, at);
    gain.gain.setValueAtTime(0, at + 0.005);
    // Context time → wall clock, through the context's own timestamp pair.
    window.madeClicks.push(performance.timeOrigin + stamp.performanceTime +
                           (at - stamp.contextTime) * 1000);
  }
  return window.madeClicks;
}
"""


class MicrophoneFeed(threading.Thread):
    """Writes 20 ms blocks into the microphone FIFO in real time, a click each second.

    A sound card whose reader falls behind overruns and drops samples; a FIFO would
    queue them instead, up to its 64 KiB (0.7 s here), and every later click would come
    that much late. So a block is dropped, as a card would, while two are unread."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.clicks: list[float] = []  # wall-clock ms of each click's first sample
        self.dropped = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        silence = np.zeros(BLOCK, dtype="<i2").tobytes()
        click = np.zeros(BLOCK, dtype="<i2")
        # 5 ms of 2 kHz: long enough to survive Opus at 32 kbit/s with its edge intact.
        burst = np.arange(240)
        click[:240] = (0.9 * 32767 * np.sin(2 * np.pi * 2000 * burst / RATE)).astype("<i2")
        with self.path.open("wb", buffering=0) as fifo:
            start = time.monotonic()
            for index in range(10**9):
                if self.stopping.is_set():
                    return
                deadline = start + index * BLOCK / RATE
                time.sleep(max(0.0, deadline - time.monotonic()))
                clicking = index % round(CLICK_EVERY * RATE / BLOCK) == 0 and index > 0
                if _unread_bytes(fifo.fileno()) >= 2 * len(silence):
                    self.dropped += 1
                    continue
                if clicking:
                    self.clicks.append(time.time() * 1000)
                try:
                    fifo.write(click.tobytes() if clicking else silence)
                except BrokenPipeError:
                    return


def _unread_bytes(fd: int) -> int:
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


class SpeakerTap(threading.Thread):
    """Reads what the daemon plays, noting when each click comes out."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.clicks: list[float] = []

    def run(self) -> None:
        quiet_until = 0.0
        with self.path.open("rb", buffering=0) as fifo:
            while block := fifo.read(BLOCK * 2):
                now = time.time() * 1000
                samples = np.frombuffer(block[: len(block) // 2 * 2], dtype="<i2")
                loud = np.flatnonzero(np.abs(samples) > 0.3 * 32767)
                if loud.size and now > quiet_until:
                    # The block was written as the daemon played it; its clicks
                    # sounded that far into it.
                    self.clicks.append(now - (len(samples) - loud[0]) / RATE * 1000)
                    quiet_until = now + 500


def pair_up(made: list[float], heard: list[float], window: float = 800) -> list[float]:
    """Latency of each made click that was heard within `window` ms."""
    latencies = []
    for at in made:
        later = [h - at for h in heard if 0 <= h - at <= window]
        if later:
            latencies.append(min(later))
    return latencies


CONFIG = """
[camera]
source = "test"
size = "{size}"
fps = 30
[video]
bitrate_kbps = {kbps}
[audio]
source = "alsa"
device = "bench_mic"
codecs = ["opus"]
[talkback]
device = "bench_speaker"
echo_cancellation = {echo}
"""


@dataclass
class AudioLatency:
    """Per click and per frame, in ms."""

    microphone: list[float]  # click written → heard in the page
    video: list[float]  # capture → shown, same page, same seconds
    talkback: list[float]  # click made in the page → played by the daemon
    written: int
    made: int
    dropped: int = 0  # microphone blocks a sound card would have lost to overrun
    # Parts of the browser's share: Chromium's audio jitter buffer (getStats, mean) and
    # its audio output (the AudioContext's base and output latency).
    jitter_buffer_ms: float | None = None
    output_ms: float | None = None

    def audio_behind_video_ms(self) -> float:
        """How much later sound arrives than the picture of the same moment (p50s)."""
        return percentile(self.microphone, 50) - percentile(self.video, 50)


def measure(clicks: int, size: str = "640x480", echo_cancellation: bool = True) -> AudioLatency:
    """The daemon as configured by default (audio on, its own page), `clicks` each way;
    `echo_cancellation` off to see what the canceller adds to the microphone's path."""
    from tests.browser import chromium, open_page, wait_js

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        mic, speaker = home / "mic.fifo", home / "speaker.fifo"
        os.mkfifo(mic)
        os.mkfifo(speaker)
        (home / ".asoundrc").write_text(ASOUNDRC.format(mic=mic, speaker=speaker))
        config = home / "peercam.toml"
        config.write_text(
            CONFIG.format(size=size, kbps=bitrate_kbps(size), echo=str(echo_cancellation).lower())
        )
        feed, tap = MicrophoneFeed(mic), SpeakerTap(speaker)
        feed.start()
        tap.start()
        # The daemon finds the FIFOs through ~/.asoundrc.
        daemon, access = start_peercam(config, env={"HOME": str(home)})
        try:
            with chromium() as browser:
                page = browser.new_page()
                # The page's CSP allows scripts from its origin alone; the listener's
                # worklet is this benchmark's, loaded from a blob in this page only.
                page.context.new_cdp_session(page).send("Page.setBypassCSP", {"enabled": True})
                open_page(page, access.base, "/")
                wait_js(
                    page,
                    "window.peercam.lastStats && window.peercam.lastStats.audioPackets > 20",
                    timeout=20_000,
                )
                page.evaluate(LISTEN, CLICK_WORKLET)
                page.evaluate(READER, reader_arguments())
                written_from = len(feed.clicks)
                time.sleep(clicks * CLICK_EVERY + 1)
                heard = page.evaluate("window.heardClicks")
                stages = page.evaluate("window.heardStages()")
                video = [float(v) for v in page.evaluate("window.g2g.shown")]
                written = feed.clicks[written_from:]
                made = page.evaluate(TALK, clicks)
                time.sleep(1.0)
        finally:
            feed.stopping.set()
            daemon.terminate()
            daemon.wait(30)
    return AudioLatency(
        microphone=pair_up(written, heard),
        video=video,
        talkback=pair_up(made, tap.clicks),
        written=len(written),
        made=len(made),
        dropped=feed.dropped,
        jitter_buffer_ms=stages.get("jitterBufferMs"),
        output_ms=stages.get("outputMs"),
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def summary(result: AudioLatency) -> list[str]:
    def line(values: list[float], unit: str) -> str:
        if not values:
            return f"none {unit}"
        return (
            f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms,"
            f" mean {statistics.fmean(values):.0f} ms ({len(values)} {unit})"
        )

    return [
        "- microphone → browser (ALSA → Opus → Chromium):"
        f" {line(result.microphone, f'of {result.written} clicks')};"
        f" {result.dropped} blocks dropped as overrun; of which Chromium's audio jitter buffer"
        f" {_ms(result.jitter_buffer_ms)} and its audio output {_ms(result.output_ms)}",
        "- camera → browser, same page, same seconds (test pattern → H.264 → Chromium):"
        f" {line(result.video, 'frames')}",
        "- sound behind picture (audio p50 minus video p50):"
        f" {result.audio_behind_video_ms():.0f} ms",
        "- talkback, mouth → ear (Chromium → Opus → ALSA):"
        f" {line(result.talkback, f'of {result.made} clicks')}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    result = measure(args.clicks, args.size)
    publish(
        "audio_latency.md",
        ["# Audio latency (clicks with known wall-clock times, loopback)", "", *summary(result)],
    )


if __name__ == "__main__":
    main()
