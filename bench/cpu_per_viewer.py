"""CPU, RSS and delivered frame rate of a running system as viewers are added.

Receivers are aiortc peers in a separate process (bench/receivers.py): ICE, DTLS,
SRTP, depacketizing and the jitter buffer run, decoding does not. At each viewer
count the system's processes are sampled over a window: CPU (% of one core, summed
over its processes), RSS, the bytes and complete frames each receiver got. The slope
of CPU over viewer count is the cost of one more viewer; the frame rate of the
least-served viewer says whether everybody is still served in full.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

from bench.processes import ROOT
from bench.systems import Running, cpu_seconds_of

FULL_RATE_FPS = 29.0  # of a 30 fps camera; one frame a second short of its rate


@dataclass
class Sample:
    viewers: int
    cpu_percent: float  # of one core, all the system's processes
    rss_mb: float
    receivers_cpu_percent: float
    slowest_viewer_kbps: float
    slowest_viewer_fps: float
    # peercam only (its /metrics): RTP packets sent per viewer per second.
    packets_per_viewer_s: float | None = None
    # The relaying part alone, % of one core: where each viewer's packets are made and
    # sent, without the camera, encoder or feeding daemon (Running.relay_seconds).
    relay_cpu_percent: float | None = None
    receiver_processes: int = 1
    # peercam only: viewers on a layer other than the main one at the window's end
    # (moved down by their layer chooser: each then costs what the low layer does).
    below_main: int | None = None
    # The system's own allocations (Running.anonymous_mb): RSS without file pages.
    anonymous_mb: float | None = None


@dataclass
class SystemRun:
    name: str
    samples: list[Sample] = field(default_factory=list)
    # The first count at which the slowest viewer got < 29 fps; None if never reached.
    falls_below_at: int | None = None
    stopped_because: str = ""
    full_rate_fps: float = FULL_RATE_FPS

    def _fitted(self, relay_only: bool) -> tuple[list[int], list[float]]:
        """(viewer counts, CPU %) at the counts where every viewer was served in full,
        and (peercam) all on the main layer: a viewer its layer chooser moved to the
        low layer costs what that layer's fewer packets cost, which would bend the
        slope of one more viewer of the same stream down."""
        full = [
            s
            for s in self.samples
            if s.slowest_viewer_fps >= self.full_rate_fps and not s.below_main
        ]
        if relay_only:
            full = [s for s in full if s.relay_cpu_percent is not None]
        xs = [s.viewers for s in full]
        ys = [(s.relay_cpu_percent or 0.0) if relay_only else s.cpu_percent for s in full]
        return xs, ys

    def per_extra_viewer(self, relay_only: bool = False) -> float:
        """Least-squares slope of CPU over viewer count, in % of a core per viewer,
        over the counts at which every viewer was served in full. `relay_only`: of
        the relaying part alone (Sample.relay_cpu_percent), which leaves out the
        encoders' own variation from window to window."""
        xs, ys = self._fitted(relay_only)
        if len(xs) < 2:
            return math.nan
        return float(statistics.linear_regression(xs, ys).slope)

    def slope_error(self, relay_only: bool = False) -> float:
        """The standard error of `per_extra_viewer`: how far the windows' scatter
        about the line leaves the slope uncertain (NaN below three counts)."""
        xs, ys = self._fitted(relay_only)
        if len(xs) < 3:
            return math.nan
        line = statistics.linear_regression(xs, ys)
        residuals = [y - (line.intercept + line.slope * x) for x, y in zip(xs, ys, strict=True)]
        mean = statistics.fmean(xs)
        spread = sum((x - mean) ** 2 for x in xs)
        return math.sqrt(sum(r * r for r in residuals) / (len(xs) - 2) / spread)

    def us_per_packet(self, relay_only: bool = False) -> float | None:
        """The extra viewer's CPU per packet it is sent (peercam only): the slope over
        the packets each viewer gets per second, in microseconds."""
        rates = [s.packets_per_viewer_s for s in self.samples if s.packets_per_viewer_s]
        slope = self.per_extra_viewer(relay_only)
        if not rates or math.isnan(slope):
            return None
        return slope / 100 * 1e6 / statistics.fmean(rates)

    def limited_by(self, sample: Sample) -> str:
        """Which side kept a viewer of `sample` from its full rate, if one did. Where
        the system says what it sent (peercam's /metrics), by that: a daemon that sent
        each viewer as many packets a second as it sent one viewer kept up, and the
        shortfall is the receivers'. Otherwise by CPU: a receiving process near a
        core, or the two cores nearly full."""
        if sample.slowest_viewer_fps >= self.full_rate_fps:
            return "none"
        first = self.samples[0].packets_per_viewer_s if self.samples else None
        if sample.packets_per_viewer_s and first:
            kept_up = sample.packets_per_viewer_s >= 0.97 * first
            return "receivers (all sent)" if kept_up else "system (sent less)"
        if sample.cpu_percent + sample.receivers_cpu_percent >= 180:
            return "both cores busy"
        if sample.receivers_cpu_percent / sample.receiver_processes >= 90:
            return "receivers (by CPU)"
        return "system (by CPU)"

    def at(self, viewers: int) -> Sample | None:
        return next((s for s in self.samples if s.viewers == viewers), None)


# One receiving process saturated a core at ~50 viewers: viewers are spread over
# processes of at most this many, so the receivers can use both cores.
VIEWERS_PER_PROCESS = 20


class _ReceiverProcess:
    """One bench/receivers.py process and the viewers it holds."""

    def __init__(self, arguments: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.receivers", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.count = 0

    def ask(self, command: str) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().split()

    def add(self, count: int) -> None:
        reply = self.ask(f"add {count}")
        if reply != ["ready", str(self.count + count)]:
            raise RuntimeError(f"receivers said {reply!r} asked for {count} more viewers")
        self.count += count

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(10)


class Receivers:
    """The receiving processes: `add`, then `bytes` and `frames` per viewer."""

    def __init__(self, arguments: list[str], per_process: int = VIEWERS_PER_PROCESS) -> None:
        self._arguments = arguments
        self._per_process = per_process
        self._processes: list[_ReceiverProcess] = []
        self.count = 0

    @property
    def processes(self) -> int:
        return len(self._processes)

    def add(self, count: int) -> None:
        """Have `count` viewers in all, each receiving."""
        while self.count < count:
            if not self._processes or self._processes[-1].count >= self._per_process:
                self._processes.append(_ReceiverProcess(self._arguments))
            last = self._processes[-1]
            more = min(count - self.count, self._per_process - last.count)
            last.add(more)
            self.count += more

    def _each(self, command: str) -> list[int]:
        values: list[int] = []
        for process in self._processes:
            reply = process.ask(command)
            assert reply and reply[0] == command, reply
            values += [int(v) for v in reply[1:]]
        return values

    def bytes(self) -> list[int]:
        return self._each("bytes")

    def frames(self) -> list[int]:
        return self._each("frames")

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(psutil.Process(p.process.pid) for p in self._processes)

    def close(self) -> None:
        for process in self._processes:
            process.close()


def _packets_sent(running: Running) -> float | None:
    """Every viewer's RTP packets so far, from peercam's /metrics."""
    if running.daemon_metrics is None:
        return None
    total = 0.0
    for line in running.daemon_metrics().splitlines():
        if line.startswith("peercam_viewer_sent_packets{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _below_main(running: Running) -> int | None:
    """peercam's viewers on a layer other than the main one now, from /metrics."""
    if running.daemon_metrics is None:
        return None
    total = 0.0
    for line in running.daemon_metrics().splitlines():
        if line.startswith("peercam_layer_viewers{") and 'layer="main"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def sample(running: Running, receivers: Receivers, window: float) -> Sample:
    time.sleep(3)  # keyframes and connection set-up settle
    bytes_before, frames_before = receivers.bytes(), receivers.frames()
    packets_before = _packets_sent(running)
    relay = running.relay_seconds
    relay_before = relay() if relay is not None else None
    cpu_before, receivers_before = running.cpu_seconds(), receivers.cpu_seconds()
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    cpu_after, receivers_after = running.cpu_seconds(), receivers.cpu_seconds()
    relay_after = relay() if relay is not None else None
    packets_after = _packets_sent(running)
    bytes_after, frames_after = receivers.bytes(), receivers.frames()
    slowest_bytes = min(b - a for a, b in zip(bytes_before, bytes_after, strict=True))
    slowest_frames = min(b - a for a, b in zip(frames_before, frames_after, strict=True))
    return Sample(
        viewers=receivers.count,
        cpu_percent=100 * (cpu_after - cpu_before) / elapsed,
        rss_mb=running.rss_mb(),
        receivers_cpu_percent=100 * (receivers_after - receivers_before) / elapsed,
        receiver_processes=receivers.processes,
        slowest_viewer_kbps=slowest_bytes * 8 / elapsed / 1000,
        slowest_viewer_fps=slowest_frames / elapsed,
        packets_per_viewer_s=(
            (packets_after - packets_before) / elapsed / receivers.count
            if packets_before is not None and packets_after is not None
            else None
        ),
        relay_cpu_percent=(
            100 * (relay_after - relay_before) / elapsed
            if relay_before is not None and relay_after is not None
            else None
        ),
        below_main=_below_main(running),
        anonymous_mb=running.anonymous_mb(),
    )


def measure(
    running: Running,
    counts: list[int],
    window: float,
    beyond: list[int] | None = None,
    fps: int = 30,
) -> SystemRun:
    """Sample at each of `counts`, then at each of `beyond`, until the slowest viewer
    gets less than `fps` - 1: the first such count is the limit of full-rate viewers."""
    run = SystemRun(running.name, full_rate_fps=fps - 1.0)
    receivers = Receivers(running.receiver_args)
    try:
        for count in [*counts, *(beyond or [])]:
            if run.falls_below_at is not None:
                break
            try:
                receivers.add(count)
            except (RuntimeError, TimeoutError) as error:
                run.stopped_because = f"{count} viewers could not connect: {error}"
                break
            measured = sample(running, receivers, window)
            run.samples.append(measured)
            if measured.slowest_viewer_fps < run.full_rate_fps and run.falls_below_at is None:
                run.falls_below_at = count
            print(
                f"  {running.name:<10} {count:>3} viewers: {measured.cpu_percent:6.1f} % CPU,"
                f" {measured.rss_mb:6.1f} MB RSS, slowest viewer {measured.slowest_viewer_fps:4.1f}"
                f" fps {measured.slowest_viewer_kbps:5.0f} kbit/s"
                f" (receivers {measured.receivers_cpu_percent:5.1f} %)"
                + (
                    f", relaying {measured.relay_cpu_percent:5.1f} %"
                    if measured.relay_cpu_percent is not None
                    else ""
                )
                + (f", {measured.below_main} below the main layer" if measured.below_main else ""),
                flush=True,
            )
    finally:
        receivers.close()
    return run
