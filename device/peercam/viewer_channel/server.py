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
- the result of each command: {"type": "result", "cmd": ..., "ok": ..., "reason": ...},
  with "re": <its id> when the command carried one;
- the reply to each request: {"re": <its id>, "ok": true, ...} or
  {"re": <id>, "ok": false, "status": <HTTP-like code>, "reason": "..."}.
Down, binary: the bytes a request asked for, in chunks of at most CHUNK bytes, each
prefixed by the request's id (4 bytes, big endian) and the chunk's offset in the
file (8 bytes, big endian).

Up, text (JSON), at most MAX_REQUEST bytes:
- {"cmd": "answer" | "decline" | "hangup" | "talk" | "untalk" | "open-door", "id": n}:
  as over the WebSocket, through this session (no session id needed: the channel is
  the session's own), with the same role checks (doorbell/commands.py) against the
  account's role at that moment; "id" is optional;
- {"id": n, "op": "clips"}: the clip list, as GET /api/events gives it;
- {"id": n, "op": "clip", "clip": <id>, "offset": k}: a clip's MP4 from byte k (a
  transfer cut by a lost connection resumes from what arrived: "offset");
- {"id": n, "op": "picture", "clip": <id>}: a clip's event picture (JPEG);
- {"id": n, "op": "snapshot"}: the camera's current picture (JPEG);
- {"id": n, "op": "cancel"}: stop sending request n.
A byte reply starts {"re": n, "ok": true, "size": <whole file>, "offset": k,
"content_type": ...}; the chunks follow; the last is the one reaching `size`. A file
that ends early (deleted meanwhile) ends its transfer with {"re": n, "ok": false,
"status": 410, "received": <bytes sent>}.

Limits per channel: one channel per session (more are closed), MAX_TRANSFERS
transfers and MAX_WAITING requests at once (past them: status 429), messages of at
most MAX_REQUEST bytes. Requests are answered concurrently, so a command never waits
behind a picture being made.

Sending waits while the channel's buffer holds more than HIGH_WATER bytes, so a slow
link slows the transfer instead of filling the camera's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiortc import RTCDataChannel

from peercam.auth.principal import Role
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
MAX_WAITING = 16  # requests and commands queued or being answered, per channel
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
    # The role an account has now (None: it no longer exists): a command acts with
    # the role of the moment, not the one the session opened with.
    role_of: Callable[[str], Role | None]


class ViewerChannels:
    """Serves the "peercam" data channel of every viewer session, one per session."""

    def __init__(self, services: ChannelServices) -> None:
        self._services = services
        self._served: set[str] = set()  # session ids with a channel being served

    async def serve(self, session: ViewerSession, channel: RTCDataChannel) -> None:
        """For as long as the channel is open; the session cancels it when it ends."""
        if channel.label != LABEL or session.id in self._served:
            # One per session: more would each hold a subscription, transfers and
            # a stats reader, for a viewer who needs one.
            logger.info("session %s: closing extra data channel %r", session.id, channel.label)
            channel.close()
            return
        self._served.add(session.id)
        try:
            await _Connection(self._services, session, channel).run()
        finally:
            self._served.discard(session.id)


class _Connection:
    def __init__(
        self, services: ChannelServices, session: ViewerSession, channel: RTCDataChannel
    ) -> None:
        self._services = services
        self._session = session
        self._channel = channel
        # Bounded by _on_message (it refuses past MAX_WAITING), never by dropping:
        # the close marker (None) must always get in.
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._drained.set()
        self._transfers: dict[int, asyncio.Task[None]] = {}
        self._requests: set[asyncio.Task[None]] = set()
        channel.bufferedAmountLowThreshold = LOW_WATER
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._inbox.put_nowait(None))
        channel.on("bufferedamountlow", self._drained.set)

    def _on_message(self, message: str | bytes) -> None:
        # Checked here, before anything is kept: a page may send messages as large as
        # the SCTP layer allows, and as many as it likes.
        if isinstance(message, bytes) or len(message) > MAX_REQUEST:
            self._send_json(to_json(CommandResult(None, False, "send requests as JSON text")))
        elif self._inbox.qsize() >= MAX_WAITING:
            # Named, so the page can give up on that request at once (it is small:
            # parsing it costs little).
            try:
                request_id = json.loads(message).get("id")
            except (ValueError, AttributeError):
                request_id = None
            self._refuse(request_id if _is_id(request_id) else None, 429, "too many requests")
        else:
            self._inbox.put_nowait(message)

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
                self._handle(message)
        finally:
            self._services.events.unsubscribe(events)
            tasks = [forwarder, reporter, *self._transfers.values(), *self._requests]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _open(self) -> bool:
        return self._channel.readyState == "open"

    def _send_json(self, message: dict[str, Any]) -> None:
        if self._open():
            self._channel.send(json.dumps(message))

    def _refuse(self, request_id: int | None, status: int, reason: str) -> None:
        self._send_json({"re": request_id, "ok": False, "status": status, "reason": reason})

    async def _forward(self, queue: asyncio.Queue[Event]) -> None:
        while self._open():
            event = await queue.get()
            if event.for_pages:
                self._send_json(to_json(event))

    async def _report_stats(self) -> None:
        # Its own reader: a send rate is measured between this reader's readings.
        reader = StatsReader(self._session.pc, layer=self._session.layer_status)
        # The camera's LAN address is no business of a viewer outside the home.
        local = not self._session.remote
        while self._open():
            try:
                stats = await reader.read()
            except Exception:  # a peer connection closing under the reading
                logger.debug("session %s: no stats", self._session.id, exc_info=True)
                return
            self._send_json({"type": "stats", **stats.to_json(local_address=local)})
            await asyncio.sleep(STATS_PERIOD)

    def _handle(self, message: str) -> None:
        """Parse one message and start answering it; nothing here waits, so that a
        command (Open door) never queues behind a picture being made."""
        try:
            data: Any = json.loads(message)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._send_json(to_json(CommandResult(None, False, "a request is a JSON object")))
            return
        request_id = data.get("id")
        if "cmd" not in data and not _is_id(request_id):
            reason = "id: an integer from 0 to 2^32 - 1"
            self._refuse(None, 400, reason)
            return
        if len(self._requests) >= MAX_WAITING:
            reason = "too many requests at once"
            self._refuse(request_id, 429, reason)
            return
        work = self._command(data) if "cmd" in data else self._request(int(data["id"]), data)
        task = asyncio.create_task(work, name=f"channel-{self._session.id[:6]}-request")
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _command(self, data: dict[str, Any]) -> None:
        session = self._session
        role = self._services.role_of(session.owner)
        name = data["cmd"]
        if role is None:
            result = CommandResult(name, False, f"the account {session.owner!r} no longer exists")
        else:
            result = await self._services.commands.run(
                name, session.owner, role, session.id, session.client
            )
        reply = to_json(result)
        if _is_id(data.get("id")):
            reply["re"] = data["id"]  # which command this answers, when asked
        self._send_json(reply)

    async def _request(self, request_id: int, data: dict[str, Any]) -> None:
        try:
            await self._answer(request_id, data)
        except RequestRefused as refusal:
            self._refuse(request_id, refusal.status, str(refusal))
        except Exception:
            # A fault of ours (a card that fails a read): this request fails, the
            # channel goes on serving.
            logger.exception("session %s: request %s failed", self._session.id, data.get("op"))
            reason = "the camera failed to answer this request"
            self._refuse(request_id, 500, reason)

    async def _answer(self, request_id: int, data: dict[str, Any]) -> None:
        op = data.get("op")
        services = self._services
        if op == "clips":
            listing = await asyncio.to_thread(
                clip_listing, services.recorder, services.motion_detection
            )
            self._send_json({"re": request_id, "ok": True, **listing})
        elif op == "snapshot":
            self._check_room(request_id)  # before a picture is made for nothing
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

    def _check_room(self, request_id: int) -> None:
        if request_id in self._transfers:
            raise RequestRefused(409, f"request {request_id} is already being sent")
        if len(self._transfers) >= MAX_TRANSFERS:
            raise RequestRefused(429, f"at most {MAX_TRANSFERS} transfers at once")

    def _start_transfer(self, request_id: int, source: _Source, offset: int, kind: str) -> None:
        self._check_room(request_id)
        task = asyncio.create_task(
            self._transfer(request_id, source, offset, kind), name=f"channel-send-{request_id}"
        )
        self._transfers[request_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            # Only this transfer: a cancelled id may already be in use again.
            if self._transfers.get(request_id) is done:
                del self._transfers[request_id]

        task.add_done_callback(forget)

    async def _transfer(self, request_id: int, source: _Source, offset: int, kind: str) -> None:
        try:
            size = await source.size()
        except FileNotFoundError:
            self._refuse(request_id, 404, "not found")
            return
        if offset > size:
            reason = f"offset {offset} is past the end ({size} bytes)"
            self._refuse(request_id, 416, reason)
            return
        self._send_json(
            {"re": request_id, "ok": True, "size": size, "offset": offset, "content_type": kind}
        )
        position = offset
        while position < size and self._open():
            try:
                block = await source.read(position, BLOCK)
            except OSError as error:
                logger.warning("session %s: reading for the page: %s", self._session.id, error)
                block = b""
            if not block:
                # Deleted meanwhile, or unreadable: the page is told where it ended.
                reason = "the file ended early (deleted meanwhile?)"
                self._send_json(
                    {"re": request_id, "ok": False, "status": 410, "reason": reason,
                     "received": position}
                )  # fmt: skip
                return
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


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


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
        return b""  # deleted meanwhile: the transfer ends short
