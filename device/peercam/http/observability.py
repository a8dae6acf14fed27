"""Liveness and Prometheus metrics."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from peercam.metrics import Metrics
from peercam.rtc.registry import SessionRegistry


class ObservabilityHandlers:
    def __init__(self, metrics: Metrics, sessions: SessionRegistry) -> None:
        self._metrics = metrics
        self._sessions = sessions
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
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
