"""HTTP for home automation: ring the bell (`POST /api/ring`), read the call state."""

from __future__ import annotations

from aiohttp import web

from peercam.doorbell.call import Doorbell
from peercam.events import to_json


class DoorbellApi:
    def __init__(self, doorbell: Doorbell) -> None:
        self._doorbell = doorbell

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/ring", self.ring), web.get("/api/state", self.state)]

    async def ring(self, request: web.Request) -> web.Response:
        self._doorbell.ring("api")
        return web.json_response(to_json(self._doorbell.snapshot()), status=202)

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(to_json(self._doorbell.snapshot()))
