"""What the daemon counts, exposed in Prometheus' text format at /metrics."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from peercam.service import blocking_pool


class RateMeter:
    """Events and bytes per second over a sliding window, for live fps and bitrate."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._events: deque[tuple[float, int]] = deque()

    def add(self, size: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._events.append((now, size))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()

    def per_second(self, now: float | None = None) -> tuple[float, float]:
        """(events per second, bits per second)."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        count = len(self._events)
        return count / self.window, sum(size for _, size in self._events) * 8 / self.window


class ViewerGauges:
    """Each viewer's connection as the camera sees it, labelled by a short session id
    (its first 8 characters). Set at each scrape; a figure not known yet has no series,
    and a closed session's series are removed, so there are never more than
    max_viewers of each."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.rtt = Gauge(
            "peercam_viewer_rtt_seconds",
            "Round-trip time to the viewer, from its RTCP receiver reports (video, else audio)",
            ["session"],
            registry=r,
        )
        self.packets_lost = Gauge(
            "peercam_viewer_packets_lost",
            "Packets the viewer reports lost, all kinds, since the session began",
            ["session"],
            registry=r,
        )
        self.fraction_lost = Gauge(
            "peercam_viewer_fraction_lost",
            "Share of packets lost (0-1) over the viewer's last report interval",
            ["session"],
            registry=r,
        )
        self.send_bitrate = Gauge(
            "peercam_viewer_send_bitrate_bps",
            "Bits per second of RTP payload sent to the viewer, since the previous scrape",
            ["session"],
            registry=r,
        )
        self.sent_bytes = Gauge(
            "peercam_viewer_sent_bytes",
            "RTP payload bytes sent to the viewer",
            ["session", "kind"],
            registry=r,
        )
        self.sent_packets = Gauge(
            "peercam_viewer_sent_packets",
            "RTP packets sent to the viewer",
            ["session", "kind"],
            registry=r,
        )
        self.path = Gauge(
            "peercam_viewer_path",
            "1 for the candidate pair the viewer's media flows over",
            ["session", "local_type", "remote_type", "protocol"],
            registry=r,
        )
        self._series: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    def update(
        self,
        session: str,
        *,
        rtt: float | None,
        packets_lost: int | None,
        fraction_lost: float | None,
        send_bitrate: float | None,
        sent_bytes: Mapping[str, int],
        sent_packets: Mapping[str, int],
        path: tuple[str, str, str] | None,
    ) -> None:
        """Set one session's series; `path` is (local type, remote type, protocol)."""
        wanted: dict[tuple[Gauge, tuple[str, ...]], float] = {}
        for gauge, value in (
            (self.rtt, rtt),
            (self.packets_lost, packets_lost),
            (self.fraction_lost, fraction_lost),
            (self.send_bitrate, send_bitrate),
        ):
            if value is not None:
                wanted[(gauge, (session,))] = float(value)
        for kind, count in sent_bytes.items():
            wanted[(self.sent_bytes, (session, kind))] = float(count)
        for kind, count in sent_packets.items():
            wanted[(self.sent_packets, (session, kind))] = float(count)
        if path is not None:
            wanted[(self.path, (session, *path))] = 1.0
        self._drop(self._series.get(session, set()) - wanted.keys())
        for (gauge, labels), value in wanted.items():
            gauge.labels(*labels).set(value)
        self._series[session] = set(wanted)

    def retain(self, sessions: Collection[str]) -> None:
        """Remove the series of every session not in `sessions`."""
        for session in [s for s in self._series if s not in sessions]:
            self._drop(self._series.pop(session))

    @staticmethod
    def _drop(series: set[tuple[Gauge, tuple[str, ...]]]) -> None:
        for gauge, labels in series:
            try:
                gauge.remove(*labels)
            except KeyError:  # two sessions sharing a short id: removed already
                pass


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped off the loop (a test reading the registry)
        return float("nan")


class Metrics:
    """One registry per daemon, so several daemons can live in one test process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.viewers = Gauge("peercam_viewers", "Connected viewer sessions", registry=r)
        # Read at each scrape, on the event loop: a count that only grows is a leak.
        self.loop_tasks = Gauge(
            "peercam_event_loop_tasks", "Tasks alive on the daemon's event loop", registry=r
        )
        self.loop_tasks.set_function(_task_count)
        self.blocking_threads = Gauge(
            "peercam_blocking_pool_threads",
            f"Threads of the pool behind asyncio.to_thread (at most {blocking_pool.MAX_WORKERS})",
            registry=r,
        )
        self.blocking_threads.set_function(lambda: float(blocking_pool.worker_count()))
        self.driver_restarts = Counter(
            "peercam_driver_restarts",
            "Capture drivers restarted because they hung",
            ["driver"],
            registry=r,
        )
        self.sessions = Counter(
            "peercam_sessions", "Viewer sessions created", ["codec"], registry=r
        )
        self.layer_viewers = Gauge(
            "peercam_layer_viewers",
            "Viewers receiving each video layer (those that may move between layers)",
            ["layer"],
            registry=r,
        )
        self.layer_switches = Counter(
            "peercam_layer_switches",
            "Viewers moved to a video layer, by the layer moved to",
            ["layer"],
            registry=r,
        )
        self.encoder_running = Gauge(
            "peercam_encoder_running",
            "1 while the codec's shared encoder runs",
            ["codec"],
            registry=r,
        )
        self.encoder_fps = Gauge(
            "peercam_encoder_fps",
            "Frames per second out of the shared encoder",
            ["codec"],
            registry=r,
        )
        self.encoder_bitrate = Gauge(
            "peercam_encoder_bitrate_bps",
            "Bits per second out of the shared encoder",
            ["codec"],
            registry=r,
        )
        self.encoded_frames = Counter(
            "peercam_encoded_frames",
            "Frames encoded (once for all viewers)",
            ["codec"],
            registry=r,
        )
        self.encoded_bytes = Counter(
            "peercam_encoded_bytes",
            "Bytes encoded (once for all viewers)",
            ["codec"],
            registry=r,
        )
        self.keyframes = Counter(
            "peercam_keyframes",
            "Keyframes produced, natural or requested",
            ["codec", "cause"],
            registry=r,
        )
        self.keyframe_requests = Counter(
            "peercam_keyframe_requests",
            "Keyframe requests received",
            ["codec", "reason"],
            registry=r,
        )
        self.skipped_captures = Counter(
            "peercam_encoder_skipped_captures",
            "Captured frames replaced before the encoder could take them",
            ["codec"],
            registry=r,
        )
        self.dropped_frames = Counter(
            "peercam_viewer_dropped_frames",
            "Encoded frames dropped for viewers that fell behind",
            ["codec"],
            registry=r,
        )
        # The daemon's share of glass-to-glass latency (the benchmark reads it).
        self.capture_to_encoded = Histogram(
            "peercam_capture_to_encoded_seconds",
            "From capture to the encoded frame reaching the fan-out hub",
            ["codec"],
            buckets=(0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.050, 0.100, 0.250),
            registry=r,
        )
        self.connections_refused = Counter(
            "peercam_http_connections_refused",
            "HTTP connections reset at accept: over the total or per-address cap, or out of"
            " descriptors",
            ["reason"],
            registry=r,
        )
        self.motion_pictures = Counter(
            "peercam_motion_pictures",
            "Pictures the motion detector analysed, by what it saw (moving or still)",
            ["seen"],
            registry=r,
        )
        self.viewer = ViewerGauges(r)
        self._meters: dict[str, RateMeter] = {}

    def frame_encoded(self, codec: str, size: int, now: float, captured_at: float) -> None:
        self.capture_to_encoded.labels(codec).observe(max(0.0, time.monotonic() - captured_at))
        self.encoded_frames.labels(codec).inc()
        self.encoded_bytes.labels(codec).inc(size)
        self._meters.setdefault(codec, RateMeter()).add(size, now)

    def render(self) -> bytes:
        for codec, meter in self._meters.items():
            fps, bps = meter.per_second()
            self.encoder_fps.labels(codec).set(fps)
            self.encoder_bitrate.labels(codec).set(bps)
        return generate_latest(self.registry)
