"""The page's side of the viewer data channel (viewer_channel/server.py), in Python,
over any aiortc RTCDataChannel: for tests, as the page's web/channel.js does it."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from aiortc import RTCDataChannel

CHUNK_HEADER = struct.Struct(">IQ")


class ChannelClient:
    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self.texts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # request id -> [(offset, bytes)]
        self.chunks: dict[int, list[tuple[int, bytes]]] = {}
        self._chunk_seen = asyncio.Event()
        self._opened = asyncio.Event()
        self._next_id = 1
        channel.on("message", self._on_message)
        channel.on("open", self._opened.set)
        if channel.readyState == "open":
            self._opened.set()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.texts.put_nowait(json.loads(message))
        else:
            request_id, offset = CHUNK_HEADER.unpack_from(message)
            self.chunks.setdefault(request_id, []).append((offset, message[CHUNK_HEADER.size :]))
            self._chunk_seen.set()

    async def opened(self, within: float = 15) -> None:
        async with asyncio.timeout(within):
            await self._opened.wait()

    async def next(self, match: dict[str, Any], within: float = 10) -> dict[str, Any]:
        """The next text message whose keys include `match`'s values (others skipped)."""
        async with asyncio.timeout(within):
            while True:
                message = await self.texts.get()
                if all(message.get(key) == value for key, value in match.items()):
                    return message

    def send(self, message: object) -> None:
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def command(self, name: str) -> dict[str, Any]:
        self.send({"cmd": name})
        return await self.next({"type": "result", "cmd": name})

    async def request(self, op: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        request_id = self._next_id
        self._next_id += 1
        self.send({"id": request_id, "op": op, **fields})
        return request_id, await self.next({"re": request_id})

    async def fetch(self, op: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
        """The reply and every byte it announces, checked to arrive in order."""
        request_id, reply = await self.request(op, **fields)
        if not reply["ok"]:
            return reply, b""
        return reply, await self.received(request_id, reply["size"] - reply["offset"])

    async def received(self, request_id: int, length: int, within: float = 20) -> bytes:
        async with asyncio.timeout(within):
            while sum(len(data) for _, data in self.chunks.get(request_id, [])) < length:
                self._chunk_seen.clear()
                await self._chunk_seen.wait()
        parts = self.chunks.pop(request_id)
        offsets = [offset for offset, _ in parts]
        assert offsets == sorted(offsets), "chunks out of order"
        return b"".join(data for _, data in parts)
