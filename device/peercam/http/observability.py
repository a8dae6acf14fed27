"""Liveness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from peercam.metrics import Metrics, ViewerGauges
from peercam.rtc.registry import SessionRegistry
from peercam.rtc.viewer_stats import StatsReader, ViewerStats

logger = logging.getLogger(__name__)


class ViewerReadings:
    """Each live viewer's stats, read together when /metrics is scraped.

    One StatsReader per session, so the send rate is over the time between scrapes;
    readers of closed sessions are dropped with their series."""

    def __init__(self, sessions: SessionRegistry, gauges: ViewerGauges) -> None:
        self._sessions = sessions
        self._gauges = gauges
        self._readers: dict[str, StatsReader] = {}

    async def refresh(self) -> None:
        live = {s.id: s for s in self._sessions.sessions()}
        for gone in self._readers.keys() - live.keys():
            del self._readers[gone]
        for session_id, session in live.items():
            if session_id not in self._readers:
                self._readers[session_id] = StatsReader(session.pc, layer=session.layer_status)
        ids = list(live)
        # aiortc's getStats only awaits its senders' and receivers' own (no I/O):
        # gathered, 50 viewers are a few milliseconds of work.
        results = await asyncio.gather(
            *(self._readers[i].read() for i in ids), return_exceptions=True
        )
        # Some may have closed meanwhile.
        still = {s.id: s.metrics_label for s in self._sessions.sessions()}
        for session_id, result in zip(ids, results, strict=True):
            if session_id not in still:
                continue
            if isinstance(result, BaseException):
                logger.debug("session %s: stats not read: %r", session_id, result)
                continue
            self._set(still[session_id], result)
        self._gauges.retain(set(still.values()))

    def _set(self, short_id: str, stats: ViewerStats) -> None:
        pair = stats.pair
        self._gauges.update(
            short_id,
            rtt=stats.rtt,
            packets_lost=stats.packets_lost,
            fraction_lost=stats.fraction_lost,
            send_bitrate=stats.send_bitrate,
            sent_bytes=stats.bytes_sent,
            sent_packets=stats.packets_sent,
            path=None if pair is None else (pair.local.type, pair.remote.type, pair.local.protocol),
        )


class ObservabilityHandlers:
    def __init__(self, metrics: Metrics, sessions: SessionRegistry) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._viewers = ViewerReadings(sessions, metrics.viewer)
        started = time.monotonic()
        Gauge(
            "peercam_uptime_seconds", "Seconds since the daemon started", registry=metrics.registry
        ).set_function(lambda: time.monotonic() - started)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.health), web.get("/metrics", self.metrics)]

    async def health(self, request: web.Request) -> web.Response:
        # Public, for monitors: that it lives, nothing more. How many watch, and since
        # when it runs, are in /metrics, behind a login.
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        await self._viewers.refresh()
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
