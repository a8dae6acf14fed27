"""The data channel of a viewer's peer connection: everything the page otherwise gets
over HTTP or the /events WebSocket, so a remote viewer needs nothing but the peer
connection.

The page opens one ordered, reliable channel labelled "peercam" before its offer.

Down, text (JSON):
- every doorbell event for pages, and the call state when the channel opens, exactly
  as the WebSocket sends them ({"type": "ring", ...});
- every STATS_PERIOD seconds the camera's side of this connection (rtc/viewer_stats.py):
  {"type": "stats", "rttSeconds": ..., "candidatePair": ..., ...}; the camera's own
  address in it only for a viewer on the home network;
- the result of each command: {"type": "result", "cmd": ..., "ok": ..., "reason": ...};
- the reply to each request: {"re": <its id>, "ok": true, ...} or
  {"re": <id>, "ok": false, "status": <HTTP-like code>, "reason": "..."}.
Down, binary: the bytes a request asked for, in chunks of at most CHUNK bytes, each
prefixed by the request's id (4 bytes, big endian) and the chunk's offset in the
file (8 bytes, big endian).

Up, text (JSON), at most MAX_REQUEST bytes:
- {"cmd": "answer" | "decline" | "hangup" | "talk" | "untalk" | "open-door"}: as over
  the WebSocket, through this session (no session id needed: the channel is the
  session's own), with the same role checks (doorbell/commands.py);
- {"id": n, "op": "clips"}: the clip list, as GET /api/events gives it;
- {"id": n, "op": "clip", "clip": <id>, "offset": k}: a clip's MP4 from byte k (a
  transfer cut by a lost connection resumes from what arrived: "offset");
- {"id": n, "op": "picture", "clip": <id>}: a clip's event picture (JPEG);
- {"id": n, "op": "snapshot"}: the camera's current picture (JPEG);
- {"id": n, "op": "cancel"}: stop sending request n.
A byte reply starts {"re": n, "ok": true, "size": <whole file>, "offset": k,
"content_type": ...}; the chunks follow; the last is the one reaching `size`.

Sending waits while the channel's buffer holds more than HIGH_WATER bytes, so a slow
link slows the transfer instead of filling the camera's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiortc import RTCDataChannel

from peercam.doorbell.call import Doorbell
from peercam.doorbell.commands import DoorbellCommands
from peercam.events import CommandResult, Event, EventBus, to_json
from peercam.pipeline import MediaPipeline
from peercam.recording.clip_listing import clip_listing
from peercam.recording.clip_store import is_clip_id
from peercam.recording.live_snapshot import NoPicture, current_jpeg
from peercam.recording.recorder import Recorder
from peercam.rtc.session import ViewerSession
from peercam.rtc.viewer_stats import StatsReader

logger = logging.getLogger(__name__)

LABEL = "peercam"
CHUNK = 16 * 1024  # what every browser takes in one message
BLOCK = 16 * CHUNK  # read from the card at a time
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
MAX_REQUEST = 4096
MAX_TRANSFERS = 4  # at once per channel
CHUNK_HEADER = struct.Struct(">IQ")
STATS_PERIOD = 2.0


class RequestRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class ChannelServices:
    """What the channel serves, built by the daemon."""

    events: EventBus
    doorbell: Doorbell
    commands: DoorbellCommands
    pipeline: MediaPipeline
    recorder: Recorder | None  # None when recording is off
    motion_detection: bool


class ViewerChannels:
    """Serves the "peercam" data channel of every viewer session."""

    def __init__(self, services: ChannelServices) -> None:
        self._services = services

    async def serve(self, session: ViewerSession, channel: RTCDataChannel) -> None:
        """For as long as the channel is open; the session cancels it when it ends."""
        if channel.label != LABEL:
            logger.info("session %s: closing unknown data channel %r", session.id, channel.label)
            channel.close()
            return
        await _Connection(self._services, session, channel).run()


class _Connection:
    def __init__(
        self, services: ChannelServices, session: ViewerSession, channel: RTCDataChannel
    ) -> None:
        self._services = services
        self._session = session
        self._channel = channel
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(64)
        self._drained = asyncio.Event()
        self._drained.set()
        self._transfers: dict[int, asyncio.Task[None]] = {}
        channel.bufferedAmountLowThreshold = LOW_WATER
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._put(None))
        channel.on("bufferedamountlow", self._drained.set)

    def _put(self, message: str | bytes | None) -> None:
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            # A page flooding requests loses the excess, not the camera's memory.
            logger.info("session %s: channel requests dropped", self._session.id)

    def _on_message(self, message: str | bytes) -> None:
        self._put(message)

    async def run(self) -> None:
        if self._channel.readyState == "connecting":
            opened = asyncio.Event()
            self._channel.on("open", opened.set)
            await opened.wait()
        events = self._services.events.subscribe()
        forwarder = asyncio.create_task(self._forward(events), name="channel-events")
        reporter = asyncio.create_task(self._report_stats(), name="channel-stats")
        try:
            self._send_json(to_json(self._services.doorbell.snapshot()))
            while (message := await self._inbox.get()) is not None:
                await self._handle(message)
        except ConnectionError:
            pass  # the channel went away under a send: nothing left to serve
        finally:
            self._services.events.unsubscribe(events)
            tasks = [forwarder, reporter, *self._transfers.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _open(self) -> bool:
        return self._channel.readyState == "open"

    def _send_json(self, message: dict[str, Any]) -> None:
        if self._open():
            self._channel.send(json.dumps(message))

    async def _forward(self, queue: asyncio.Queue[Event]) -> None:
        while self._open():
            event = await queue.get()
            if event.for_pages:
                self._send_json(to_json(event))

    async def _report_stats(self) -> None:
        # Its own reader: a send rate is measured between this reader's readings.
        reader = StatsReader(self._session.pc)
        # The camera's LAN address is no business of a viewer outside the home.
        local = not self._session.remote
        while self._open():
            stats = await reader.read()
            self._send_json({"type": "stats", **stats.to_json(local_address=local)})
            await asyncio.sleep(STATS_PERIOD)

    async def _handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes) or len(message) > MAX_REQUEST:
            self._send_json(to_json(CommandResult(None, False, "send requests as JSON text")))
            return
        try:
            data: Any = json.loads(message)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._send_json(to_json(CommandResult(None, False, "a request is a JSON object")))
            return
        if "cmd" in data:
            session = self._session
            result = await self._services.commands.run(
                data["cmd"], session.owner, session.role, session.id, session.client
            )
            self._send_json(to_json(result))
            return
        request_id = data.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            self._send_json({"re": None, "ok": False, "status": 400, "reason": "id: an integer"})
            return
        if not 0 <= request_id < 2**32:
            self._send_json({"re": None, "ok": False, "status": 400, "reason": "id: 0 to 2^32"})
            return
        try:
            await self._request(request_id, data)
        except RequestRefused as refusal:
            self._send_json(
                {"re": request_id, "ok": False, "status": refusal.status, "reason": str(refusal)}
            )

    async def _request(self, request_id: int, data: dict[str, Any]) -> None:
        op = data.get("op")
        services = self._services
        if op == "clips":
            listing = await asyncio.to_thread(
                clip_listing, services.recorder, services.motion_detection
            )
            self._send_json({"re": request_id, "ok": True, **listing})
        elif op == "snapshot":
            try:
                picture = await current_jpeg(services.pipeline, services.recorder)
            except NoPicture as error:
                raise RequestRefused(503, f"no picture: {error}") from None
            self._start_transfer(request_id, _Bytes(picture), 0, "image/jpeg")
        elif op in ("clip", "picture"):
            path = self._clip_path(str(op), data.get("clip"))
            offset = data.get("offset", 0)
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise RequestRefused(400, "offset: a byte position, 0 or more")
            kind = "video/mp4" if op == "clip" else "image/jpeg"
            self._start_transfer(request_id, _File(path), offset, kind)
        elif op == "cancel":
            task = self._transfers.pop(request_id, None)
            if task is not None:
                task.cancel()
            self._send_json({"re": request_id, "ok": True, "cancelled": task is not None})
        else:
            raise RequestRefused(400, f"unknown op {str(op)[:32]!r}")

    def _clip_path(self, op: str, clip_id: object) -> Path:
        recorder = self._services.recorder
        store = recorder.store if recorder is not None else None
        if store is None:
            raise RequestRefused(404, "recording is off (recording.enabled in peercam.toml)")
        if not isinstance(clip_id, str) or not is_clip_id(clip_id):
            raise RequestRefused(404, f"no clip {str(clip_id)[:64]!r}")
        return store.video_path(clip_id) if op == "clip" else store.thumbnail_path(clip_id)

    def _start_transfer(self, request_id: int, source: _Source, offset: int, kind: str) -> None:
        if request_id in self._transfers:
            raise RequestRefused(409, f"request {request_id} is already being sent")
        if len(self._transfers) >= MAX_TRANSFERS:
            raise RequestRefused(429, f"at most {MAX_TRANSFERS} transfers at once")
        task = asyncio.create_task(
            self._transfer(request_id, source, offset, kind), name=f"channel-send-{request_id}"
        )
        self._transfers[request_id] = task
        task.add_done_callback(lambda _: self._transfers.pop(request_id, None))

    async def _transfer(self, request_id: int, source: _Source, offset: int, kind: str) -> None:
        try:
            size = await source.size()
        except FileNotFoundError:
            self._send_json({"re": request_id, "ok": False, "status": 404, "reason": "not found"})
            return
        if offset > size:
            reason = f"offset {offset} is past the end ({size} bytes)"
            self._send_json({"re": request_id, "ok": False, "status": 416, "reason": reason})
            return
        self._send_json(
            {"re": request_id, "ok": True, "size": size, "offset": offset, "content_type": kind}
        )
        position = offset
        while position < size and self._open():
            block = await source.read(position, BLOCK)
            if not block:
                break  # the file shrank (deleted meanwhile): the page sees it end short
            for start in range(0, len(block), CHUNK):
                await self._room()
                if not self._open():
                    return
                chunk = block[start : start + CHUNK]
                self._channel.send(CHUNK_HEADER.pack(request_id, position) + chunk)
                position += len(chunk)

    async def _room(self) -> None:
        while self._channel.bufferedAmount > HIGH_WATER and self._open():
            self._drained.clear()
            await self._drained.wait()


class _Source(Protocol):
    async def size(self) -> int: ...

    async def read(self, offset: int, length: int) -> bytes: ...


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def size(self) -> int:
        return len(self._data)

    async def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class _File:
    """Read in a worker thread a chunk at a time; an SD card may stall."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def size(self) -> int:
        return (await asyncio.to_thread(self._path.stat)).st_size

    async def read(self, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(_read_at, self._path, offset, length)


def _read_at(path: Path, offset: int, length: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(length)
    except FileNotFoundError:
        return b""
