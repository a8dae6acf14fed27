"""The page's push channel, a WebSocket at /events.

Down: every doorbell event, and the call state on connect. Up: commands (answer,
decline, hang up, talk, stop talking, open the door). A command names the viewer's
live WHEP session, an unguessable id only that page holds, and is checked on the
server: every command needs the admin role (a viewer only watches), and the session
must be the caller's own. No session, an unknown command, a missing role or a refused
action gets a `result` with `ok: false` and the reason, and nothing else changes.
Connecting at all needs a login (the access middleware), from the camera's own origin.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from peercam.auth.principal import Principal
from peercam.doorbell.call import Doorbell
from peercam.doorbell.commands import DoorbellCommands
from peercam.events import CommandResult, Event, EventBus, to_json
from peercam.http.access import principal_of
from peercam.rtc.registry import SessionRegistry

logger = logging.getLogger(__name__)


class PushChannel:
    def __init__(self, events: EventBus, doorbell: Doorbell, sessions: SessionRegistry) -> None:
        self._events = events
        self._doorbell = doorbell
        self._sessions = sessions
        self._sockets: set[web.WebSocketResponse] = set()
        self._commands = DoorbellCommands(doorbell)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/events", self.connect)]

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        principal = principal_of(request)
        if principal is None:  # the access middleware lets no one here without one
            raise web.HTTPUnauthorized()
        socket = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
        await socket.prepare(request)
        self._sockets.add(socket)
        queue = self._events.subscribe()
        forwarder = asyncio.create_task(self._forward(queue, socket), name="push-forward")
        try:
            await socket.send_json(to_json(self._doorbell.snapshot()))
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    await socket.send_json(to_json(await self._command(message.data, principal)))
                elif message.type == WSMsgType.ERROR:
                    break
                else:
                    await socket.send_json(to_json(_refusal(None, "send commands as JSON text")))
        finally:
            self._events.unsubscribe(queue)
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
            self._sockets.discard(socket)
        return socket

    async def _forward(self, queue: asyncio.Queue[Event], socket: web.WebSocketResponse) -> None:
        while not socket.closed:
            event = await queue.get()
            if not event.for_pages:
                continue
            try:
                await socket.send_json(to_json(event))
            except ConnectionError:
                return

    async def _command(self, text: str, principal: Principal) -> CommandResult:
        try:
            data: Any = json.loads(text)
        except ValueError:
            return _refusal(None, "not JSON")
        if not isinstance(data, dict):
            return _refusal(None, "a command is a JSON object")
        name = data.get("cmd")
        refusal = self._commands.refusal(name, principal.name, principal.role)
        if refusal is not None:
            return refusal
        session_id = data.get("session")
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None or session.owner != principal.name:
            return _refusal(name, "no such session: a command needs your live viewer session")
        return await self._commands.run(
            name, principal.name, principal.role, session.id, session.client
        )

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self._sockets)), return_exceptions=True)


def _refusal(command: object, reason: str) -> CommandResult:
    return CommandResult(command, False, reason)
