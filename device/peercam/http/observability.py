"""Liveness and Prometheus metrics."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from peercam.metrics import Metrics
from peercam.rtc.registry import SessionRegistry


class ObservabilityHandlers:
    def __init__(self, metrics: Metrics, sessions: SessionRegistry) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._started = time.monotonic()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.health), web.get("/metrics", self.metrics)]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "viewers": len(self._sessions),
                "uptime_s": round(time.monotonic() - self._started, 1),
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
