"""CPU per extra viewer: peercam's shared encode against aiortc's per-viewer encode.

Run with `make bench`. Starts each server in turn on the same test pattern
(640x480@30, H.264, video only), connects 1 then more receiving peers from a separate
process (bench/receivers.py), and measures the server's CPU (% of one core) and RSS
at each count. The slope over the viewer counts is the cost of one more viewer.
Then loads the viewer page in headless Chromium 20 times and reports the time from
navigation to the first decoded frame. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from tests.access import TEST_PASSWORD, Access

from bench.report import publish

ROOT = Path(__file__).resolve().parent.parent

PEERCAM_CONFIG = """
[camera]
source = "test"
size = "{size}"
fps = {fps}
[video]
codecs = ["h264"]
bitrate_kbps = 1500
[audio]
enabled = false
[viewers]
max_viewers = 200
# Every receiver comes from this one address.
max_per_client = 200
sessions_per_minute_per_client = 1000
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sample:
    viewers: int
    cpu_percent: float  # of one core
    rss_mb: float
    receivers_cpu_percent: float
    stream_kbps: float  # the server's own encoder reading; NaN where it has none
    slowest_viewer_kbps: float  # what the least-served receiver got during the window


@dataclass
class SystemRun:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def per_extra_viewer(self) -> float:
        """Least-squares slope of CPU over viewer count, in % of a core per viewer."""
        xs = [s.viewers for s in self.samples]
        ys = [s.cpu_percent for s in self.samples]
        return float(statistics.linear_regression(xs, ys).slope) if len(xs) > 1 else float("nan")


def cpu_percent(process: psutil.Process, seconds: float) -> float:
    before = process.cpu_times()
    started = time.monotonic()
    time.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return float(100 * used / (time.monotonic() - started))


def start_server(
    command: list[str], marker: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert server.stdout is not None
    for line in server.stdout:
        if marker in line:
            return server
    raise RuntimeError(f"{command[2:4]} did not start")


def start_peercam(
    config: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Access]:
    """The daemon with `config` on a free loopback port, as the tests start it (HTTPS,
    the tests' admin password, state next to the config): (process, access)."""
    port = free_port()
    state = config.parent / "state"
    command = [sys.executable, "-m", "peercam", "run", "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port), "--http-port", "0",
               "--state-dir", str(state)]  # fmt: skip
    server = start_server(command, "serving on", {"PEERCAM_PASSWORD": TEST_PASSWORD, **(env or {})})
    return server, Access(f"https://127.0.0.1:{port}", state / "tls-cert.pem")


def measure(
    name: str,
    server: subprocess.Popen[str],
    endpoint: str,
    counts: list[int],
    window: float,
    access: Access | None = None,
) -> SystemRun:
    """CPU and RSS of `server` while `counts` receivers watch `endpoint`; `access` for
    peercam (credentials, certificate, its encoder's bitrate)."""
    run = SystemRun(name)
    credentials = []
    if access is not None:
        credentials = ["--authorization", access.headers["Authorization"]]
        if access.cert is not None:
            credentials += ["--cafile", str(access.cert)]
    receivers = subprocess.Popen(
        [sys.executable, "-m", "bench.receivers", endpoint, *credentials],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert receivers.stdin is not None and receivers.stdout is not None
    server_process = psutil.Process(server.pid)
    receivers_process = psutil.Process(receivers.pid)
    connected = 0
    try:
        for count in counts:
            receivers.stdin.write(f"add {count - connected}\n")
            receivers.stdin.flush()
            line = receivers.stdout.readline().strip()
            if line != f"ready {count}":
                raise RuntimeError(f"{name}: receivers said {line!r} for {count} viewers")
            connected = count
            time.sleep(3)  # let keyframes and connection set-up settle
            bytes_before = received_bytes(receivers)
            receivers_before = receivers_process.cpu_times()
            cpu = cpu_percent(server_process, window)
            receivers_after = receivers_process.cpu_times()
            bytes_after = received_bytes(receivers)
            slowest = min(b - a for a, b in zip(bytes_before, bytes_after, strict=True))
            slowest_kbps = slowest * 8 / window / 1000
            receivers_cpu = 100 * (
                receivers_after.user + receivers_after.system
                - receivers_before.user - receivers_before.system
            ) / window  # fmt: skip
            rss = server_process.memory_info().rss / 2**20
            kbps = encoder_bitrate(access) if access else float("nan")
            run.samples.append(Sample(count, cpu, rss, receivers_cpu, kbps, slowest_kbps))
            print(
                f"  {name:<28} {count:>3} viewers: {cpu:6.1f} % of a core, {rss:6.1f} MB RSS,"
                f" slowest viewer got {slowest_kbps:6.0f} kbit/s"
                f" (receivers {receivers_cpu:5.1f} %)",
                flush=True,
            )
    finally:
        receivers.stdin.write("quit\n")
        receivers.stdin.flush()
        receivers.wait(30)
    return run


def received_bytes(receivers: subprocess.Popen[str]) -> list[int]:
    assert receivers.stdin is not None and receivers.stdout is not None
    receivers.stdin.write("bytes\n")
    receivers.stdin.flush()
    words = receivers.stdout.readline().split()
    assert words and words[0] == "bytes", words
    return [int(w) for w in words[1:]]


def encoder_bitrate(access: Access) -> float:
    """peercam's own reading of its encoder's output, in kbit/s."""
    for line in access.urlopen("/metrics", timeout=5).decode().splitlines():
        if line.startswith("peercam_encoder_bitrate_bps{"):
            return float(line.rsplit(" ", 1)[1]) / 1000
    return float("nan")


def first_frame_times(access: Access, loads: int) -> list[float]:
    from tests.browser import chromium, open_page

    times = []
    with chromium() as browser:
        open_page(browser.new_page(), access.base, "/login")  # logged in once, like a user
        for _ in range(loads):
            page = browser.new_page()
            page.goto(access.base + "/?codec=H264")
            deadline = time.monotonic() + 15
            value = None
            while value is None and time.monotonic() < deadline:
                value = page.evaluate("window.peercam && window.peercam.firstFrameMs")
                time.sleep(0.02)
            if value is not None:
                times.append(float(value))
            page.close()
            time.sleep(0.5)
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--viewers", default="1,2,5,10", help="peercam viewer counts")
    parser.add_argument("--baseline-viewers", default="1,2,3", help="baseline viewer counts")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--loads", type=int, default=20, help="page loads for first-frame time")
    args = parser.parse_args()
    counts = [int(v) for v in args.viewers.split(",")]
    baseline_counts = [int(v) for v in args.baseline_viewers.split(",")]
    print(f"CPU per viewer at {args.size}@{args.fps}, H.264, on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "peercam.toml"
        config.write_text(PEERCAM_CONFIG.format(size=args.size, fps=args.fps))
        peercam, access = start_peercam(config)
        try:
            ours = measure(
                "peercam (encode once)", peercam, f"{access.base}/whep", counts,
                args.window, access=access,
            )  # fmt: skip
            bitrate = statistics.fmean(s.stream_kbps for s in ours.samples)
            first_frames = first_frame_times(access, args.loads)
        finally:
            peercam.terminate()
            peercam.wait(30)

    port = free_port()
    baseline = start_server(
        [sys.executable, "-m", "bench.baseline_server", "--port", str(port),
         "--size", args.size, "--fps", str(args.fps)],
        "serving on",
    )  # fmt: skip
    try:
        theirs = measure(
            "aiortc (encode per viewer)", baseline, f"http://127.0.0.1:{port}/whep",
            baseline_counts, args.window,
        )  # fmt: skip
    finally:
        baseline.terminate()
        baseline.wait(30)

    ours_slope, theirs_slope = ours.per_extra_viewer(), theirs.per_extra_viewer()
    lines = [
        f"# CPU per viewer, {args.size}@{args.fps} H.264, {os.cpu_count()} cores",
        "",
        "| system | viewers | CPU % of a core | RSS MB | slowest viewer received kbit/s |",
        "|---|---|---|---|---|",
        *(
            f"| {run.name} | {s.viewers} | {s.cpu_percent:.1f} | {s.rss_mb:.0f} "
            f"| {s.slowest_viewer_kbps:.0f} |"
            for run in (ours, theirs)
            for s in run.samples
        ),
        "",
        f"- stream: {bitrate:.0f} kbit/s out of peercam's encoder (test pattern with noise)",
        f"- peercam, CPU per extra viewer: {ours_slope:.2f} % of a core",
        f"- aiortc per-viewer encode, CPU per extra viewer: {theirs_slope:.2f} % of a core",
        f"- ratio baseline / peercam: {theirs_slope / ours_slope:.1f}x"
        if ours_slope > 0
        else "- ratio: peercam's slope is not positive at this resolution of measurement",
    ]
    if first_frames:
        lines.append(
            f"- page load -> first frame in Chromium ({len(first_frames)} loads): "
            f"p50 {percentile(first_frames, 50):.0f} ms, p95 {percentile(first_frames, 95):.0f} ms"
        )
    publish("cpu_per_viewer.md", lines)


if __name__ == "__main__":
    main()
