"""Viewer sessions opened through the rendezvous: the sealed counterpart of WHEP.

Each message is one JSON object, sealed (sealing.py) between a paired device and the
camera. `call` is the device's name for one viewer session (any short string); the
camera answers on the device's own topic with the same `call`.

    device                                         camera
    {"type": "ice", "call": c}                  -> {"type": "ice", "call": c,
                                                    "servers": [...], "policy": "all"}
    {"type": "offer", "call": c, "sdp": ...}    -> {"type": "answer", "call": c, "sdp": ...,
                                                    "session": id, "user": u, "role": r}
    {"type": "candidate", "call": c,
     "candidates": ["candidate:..."], "mid": m} -> (nothing)
    {"type": "hangup", "call": c}               -> (nothing)
    anything refused once opened                -> {"type": "error", "call": c,
                                                    "status": 400, "reason": "..."}

The ICE servers come first because the device needs TURN credentials to gather
relay candidates for its offer. A session opened here is like one opened over WHEP
(same limits, same data channel, same commands) and acts as the account the device
was paired for; its answer lists only the candidates a remote viewer can use when
`remote.candidates` is "public".

A message that does not open (unpaired device, replay, another camera, forgery,
stale) is dropped with a logged reason and counted; nothing is sent back, since
nothing can be sealed for a sender that is not known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import candidate_from_sdp
from prometheus_client import Counter

from peercam.auth.authenticator import Authenticator
from peercam.auth.principal import Role
from peercam.config import Config
from peercam.ice.candidate_filter import public_candidates_only
from peercam.ice.servers import session_ice
from peercam.metrics import Metrics
from peercam.rate_window import RateWindow
from peercam.remote.devices import DeviceStore
from peercam.remote.refused import Refused
from peercam.remote.rendezvous import LinkDown, RendezvousLink
from peercam.remote.sealing import CameraChannel, Opened
from peercam.rtc.negotiation import OfferError, plan_offer
from peercam.rtc.registry import ClientOverLimit, SessionRegistry, TooManyViewers
from peercam.rtc.session import REMOTE_CLIENT, ViewerSession

logger = logging.getLogger(__name__)

MAX_CALL_ID = 64
MAX_CALLS_PER_DEVICE = 8
MAX_CANDIDATES = 32
# Messages being handled at once (offers take a while: gathering), per device and in
# all; past either, dropped: one busy phone does not crowd out the others.
MAX_IN_FLIGHT_PER_DEVICE = 8
MAX_IN_FLIGHT = 32
# Messages opened per second, before any key work: anyone who may publish on the
# broker can send, and each opening costs two ECDH operations on the event loop
# that also paces the media. Signaling needs a handful per call.
MAX_PER_SECOND = 30
KNOWN_TYPES = ("ice", "offer", "candidate", "hangup")


@dataclass
class _Call:
    device_id: str
    session_id: str


class BadMessage(ValueError):
    """An opened message the camera cannot act on; the reason goes back sealed."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class _Opening:
    """A call whose offer is being answered: reserved before the wait, so that a
    second offer for it is refused and a hang-up meanwhile is not lost."""

    hung_up: bool = False


class RemoteSignaling:
    def __init__(
        self,
        config: Config,
        channel: CameraChannel,
        devices: DeviceStore,
        sessions: SessionRegistry,
        accounts: Authenticator | None,
        link: RendezvousLink,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._channel = channel
        self._devices = devices
        self._sessions = sessions
        self._accounts = accounts
        self._link = link
        self._calls: dict[tuple[str, str], _Call] = {}
        self._opening: dict[tuple[str, str], _Opening] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}  # -> the device it serves
        self._recent = RateWindow(1.0)
        self._closed = False
        self._refused = Counter(
            "peercam_remote_refused",
            "Remote signaling messages refused, by reason",
            ["reason"],
            registry=metrics.registry,
        )
        self._handled = Counter(
            "peercam_remote_messages",
            "Remote signaling messages handled, by type",
            ["type"],
            registry=metrics.registry,
        )

    async def receive(self, data: bytes) -> None:
        """What the link delivers: opened and checked here, acted on in a task (an
        offer takes a while), so the link keeps reading."""
        if self._closed:
            return
        if self._recent.count("*") >= MAX_PER_SECOND:
            self._refused.labels("rate-limited").inc()
            logger.warning("remote access: over %d messages a second; dropping", MAX_PER_SECOND)
            return
        self._recent.add("*")
        try:
            opened = self._channel.open(data)
        except Refused as refusal:
            self._refused.labels(refusal.code).inc()
            logger.warning("remote access: refused a message: %s", refusal)
            return
        device_id = opened.device_id
        mine = sum(1 for owner in self._tasks.values() if owner == device_id)
        if mine >= MAX_IN_FLIGHT_PER_DEVICE or len(self._tasks) >= MAX_IN_FLIGHT:
            self._refused.labels("busy").inc()
            logger.warning("remote access: %d messages in hand; dropping one", len(self._tasks))
            return
        task = asyncio.create_task(self._handle(opened), name=f"remote-{device_id[:6]}")
        self._tasks[task] = device_id
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _handle(self, opened: Opened) -> None:
        device_id = opened.device_id
        call: object = None
        reply: dict[str, Any] | None = None  # candidates and hang-ups get none
        try:
            message = _parse(opened.payload)
            call = message.get("call")
            kind = message.get("type")
            if not isinstance(call, str) or not 0 < len(call) <= MAX_CALL_ID:
                raise BadMessage(f"call must be a string of 1 to {MAX_CALL_ID} characters")
            self._handled.labels(kind if kind in KNOWN_TYPES else "other").inc()
            if kind == "ice":
                self._account(device_id)  # TURN credentials only for a live account
                reply = self._ice(call)
            elif kind == "offer":
                reply = await self._offer(device_id, call, message)
            elif kind == "candidate":
                self._candidates(device_id, call, message)
            elif kind == "hangup":
                await self._hang_up(device_id, call)
            else:
                raise BadMessage(f"unknown message type {str(kind)[:32]!r}")
        except BadMessage as error:
            logger.info("remote access: %s: %s", device_id[:12], error)
            reply = {"type": "error", "call": call, "status": error.status, "reason": str(error)}
        except Exception:
            # A fault of ours: this message fails, the link and other calls go on.
            logger.exception("remote access: a message from %s failed", device_id[:12])
            reason = "the camera failed to handle this message"
            reply = {"type": "error", "call": call, "status": 500, "reason": reason}
        if reply is not None:
            await self._send(device_id, reply)
        await self._seen(device_id)

    async def _seen(self, device_id: str) -> None:
        # After the message is handled: messages of one device are acted on in the
        # order they came (an offer reserves its call before a hang-up looks for it),
        # which a wait before that would undo.
        try:
            await asyncio.to_thread(self._devices.seen, device_id, time.time())
        except OSError as error:  # a full or failing card: noted, not fatal
            logger.warning("remote access: cannot note %s as seen: %s", device_id[:12], error)

    async def _send(self, device_id: str, reply: dict[str, Any]) -> None:
        try:
            sealed = self._channel.seal(device_id, json.dumps(reply).encode())
        except Refused as refusal:  # unpaired while its message was in hand
            logger.info("remote access: not answering %s: %s", device_id[:12], refusal)
            return
        except ValueError as error:  # over the sealed size (an SDP that big is a fault)
            logger.warning("remote access: answer to %s too large: %s", device_id[:12], error)
            return
        try:
            await self._link.send(device_id, sealed)
        except LinkDown as error:
            logger.warning("remote access: answer to %s lost: %s", device_id[:12], error)

    def _ice(self, call: str) -> dict[str, Any]:
        webrtc = self._config.webrtc
        servers = session_ice(webrtc, "remote-" + secrets.token_hex(6)).for_viewer
        return {
            "type": "ice",
            "call": call,
            "servers": [server.model_dump(exclude_none=True) for server in servers],
            "policy": webrtc.ice_transport_policy,
        }

    def _account(self, device_id: str) -> tuple[str, Role]:
        """The account the device acts as, and its role now; BadMessage when the
        device was unpaired or the account no longer exists."""
        device = self._devices.get(device_id)
        if device is None:
            raise BadMessage("this device is not paired", 403)
        if self._accounts is None:
            return device.user, "viewer"
        role = self._accounts.role_of(device.user)
        if role is None:
            raise BadMessage(
                f"the account {device.user!r} this device was paired for no longer exists", 403
            )
        return device.user, role

    async def _offer(self, device_id: str, call: str, message: dict[str, Any]) -> dict[str, Any]:
        sdp = message.get("sdp")
        if not isinstance(sdp, str):
            raise BadMessage("an offer needs its sdp as a string")
        if len(sdp.encode()) > self._config.server.max_sdp_bytes:
            raise BadMessage(f"sdp over {self._config.server.max_sdp_bytes} bytes", 413)
        owner, role = self._account(device_id)
        self._forget_closed()
        key = (device_id, call)
        if key in self._calls or key in self._opening:
            raise BadMessage(f"call {call!r} is already open; hang up first", 409)
        mine = [k for k in (*self._calls, *self._opening) if k[0] == device_id]
        if len(mine) >= MAX_CALLS_PER_DEVICE:
            raise BadMessage(f"at most {MAX_CALLS_PER_DEVICE} calls per device", 429)
        opening = self._opening[key] = _Opening()
        try:
            return await self._open_call(device_id, call, sdp, owner, role, opening)
        finally:
            del self._opening[key]

    async def _open_call(
        self, device_id: str, call: str, sdp: str, owner: str, role: Role, opening: _Opening
    ) -> dict[str, Any]:
        config = self._config
        try:
            plan = plan_offer(
                sdp, config.video.codecs, config.audio.codecs if config.audio.enabled else []
            )
            session, answer = await self._sessions.create(
                plan, client=REMOTE_CLIENT + device_id[:12], owner=owner, role=role
            )
        except OfferError as error:
            raise BadMessage(str(error)) from None
        except TooManyViewers as error:
            raise BadMessage(str(error), 503) from None
        except ClientOverLimit as error:
            raise BadMessage(str(error), 429) from None
        except (ValueError, InternalError, InvalidAccessError, InvalidStateError, OperationError):
            raise BadMessage("offer rejected: it could not be negotiated") from None
        if opening.hung_up or self._devices.get(device_id) is None:
            # Hung up, or unpaired, while the answer was being made.
            await session.close()
            raise BadMessage(f"call {call!r} ended before it was answered", 410)
        self._calls[(device_id, call)] = _Call(device_id, session.id)
        if config.remote.candidates == "public":
            answer = public_candidates_only(answer)
        logger.info("remote access: session %s for device %s", session.id, device_id[:12])
        return {
            "type": "answer",
            "call": call,
            "sdp": answer,
            "session": session.id,
            # What the page may offer (Talk, Open door): the account's role.
            "user": owner,
            "role": role,
        }

    def _session_of(self, device_id: str, call: str) -> ViewerSession:
        known = self._calls.get((device_id, call))
        session = self._sessions.get(known.session_id) if known else None
        if session is None:
            self._calls.pop((device_id, call), None)
            raise BadMessage(f"no open call {call!r}", 404)
        return session

    def _candidates(self, device_id: str, call: str, message: dict[str, Any]) -> None:
        session = self._session_of(device_id, call)
        lines = message.get("candidates")
        mid = message.get("mid")
        if not isinstance(lines, list) or len(lines) > MAX_CANDIDATES:
            raise BadMessage(f"candidates must be a list of at most {MAX_CANDIDATES}")
        candidates = []
        for line in lines:
            if not isinstance(line, str) or not line.startswith("candidate:"):
                raise BadMessage("each candidate is an a=candidate value, 'candidate:...'")
            try:
                candidate = candidate_from_sdp(line[len("candidate:") :])
            except (ValueError, IndexError, AssertionError):
                raise BadMessage(f"unreadable candidate {line[:80]!r}") from None
            candidate.sdpMid = mid if isinstance(mid, str) else None
            candidate.sdpMLineIndex = 0
            candidates.append(candidate)
        session.add_candidates(candidates)

    async def _hang_up(self, device_id: str, call: str) -> None:
        opening = self._opening.get((device_id, call))
        if opening is not None:
            opening.hung_up = True  # the offer's handler closes what it opens
            return
        session = self._session_of(device_id, call)
        self._calls.pop((device_id, call), None)
        await session.close()

    async def unpaired(self, device_id: str) -> None:
        """End the calls of a device just unpaired: what it opened ends with it."""
        ending = [key for key in self._calls if key[0] == device_id]
        sessions = [self._sessions.get(self._calls.pop(key).session_id) for key in ending]
        await asyncio.gather(*(s.close() for s in sessions if s is not None))

    def _forget_closed(self) -> None:
        for key, known in list(self._calls.items()):
            if self._sessions.get(known.session_id) is None:
                del self._calls[key]

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload)
    except ValueError:
        raise BadMessage("not JSON") from None
    if not isinstance(message, dict):
        raise BadMessage("a message is a JSON object")
    return message
