"""WHEP: a viewer POSTs an SDP offer, gets an answer and a session resource to PATCH
(trickled candidates) and DELETE (hang up). draft-ietf-wish-whep, after RFC 9725."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from aiortc import RTCIceCandidate
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import candidate_from_sdp

from peercam.config import Config, IceServer
from peercam.http.access import principal_of
from peercam.http.errors import refuse
from peercam.http.ice_links import link_headers
from peercam.ice.servers import session_ice
from peercam.rtc.negotiation import OfferError, plan_offer
from peercam.rtc.registry import ClientOverLimit, SessionRegistry, TooManyViewers
from peercam.rtc.session import ViewerSession

logger = logging.getLogger(__name__)

SESSIONS_PATH = "/whep/sessions"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "Location, Link, ETag, Accept-Patch, Accept-Post, Peercam-Ice-Transport-Policy"
    ),
}


class WhepHandlers:
    def __init__(self, config: Config, sessions: SessionRegistry) -> None:
        self._config = config
        self._sessions = sessions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/whep", self.offer),
            web.options("/whep", self.preflight),
            web.patch(SESSIONS_PATH + "/{id}", self.trickle),
            web.delete(SESSIONS_PATH + "/{id}", self.hang_up),
            web.options(SESSIONS_PATH + "/{id}", self.preflight),
        ]

    def _ice_headers(self, response: web.Response, servers: list[IceServer]) -> None:
        for link in link_headers(servers):
            response.headers.add("Link", link)
        response.headers["Peercam-Ice-Transport-Policy"] = self._config.webrtc.ice_transport_policy

    async def preflight(self, request: web.Request) -> web.Response:
        methods = "POST, OPTIONS" if request.path == "/whep" else "PATCH, DELETE, OPTIONS"
        response = web.Response(
            status=204,
            headers={
                **_CORS,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
                "Access-Control-Max-Age": "600",
                "Accept-Post": "application/sdp",
                "Accept-Patch": "application/trickle-ice-sdpfrag",
            },
        )
        if request.path == "/whep" and principal_of(request) is not None:
            # A browser needs its ICE servers before it can make the offer; these
            # credentials are minted for this request alone and expire by themselves.
            # A preflight carries no credentials and is public, so TURN credentials
            # go only to a caller who proves it may watch.
            servers = session_ice(self._config.webrtc, secrets.token_hex(8)).for_viewer
            self._ice_headers(response, servers)
        return response

    async def _read_text(self, request: web.Request, content_type: str) -> str | web.Response:
        if request.content_type != content_type:
            return refuse(415, f"Content-Type must be {content_type}", **_CORS)
        limit = self._config.server.max_sdp_bytes
        if request.content_length is not None and request.content_length > limit:
            return refuse(413, f"body over {limit} bytes", **_CORS)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return refuse(413, f"body over {limit} bytes", **_CORS)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return refuse(400, "body is not UTF-8 text", **_CORS)

    async def offer(self, request: web.Request) -> web.Response:
        text = await self._read_text(request, "application/sdp")
        if isinstance(text, web.Response):
            return text
        config = self._config
        try:
            plan = plan_offer(
                text, config.video.codecs, config.audio.codecs if config.audio.enabled else []
            )
        except OfferError as error:
            return refuse(400, str(error), **_CORS)
        principal = principal_of(request)
        owner = principal.name if principal else ""
        try:
            session, answer = await self._sessions.create(
                plan,
                client=request.remote or "",
                owner=owner,
                role=principal.role if principal else "viewer",
            )
        except TooManyViewers as error:
            return refuse(503, str(error), **{**_CORS, "Retry-After": "10"})
        except ClientOverLimit as error:
            return refuse(429, str(error), **{**_CORS, "Retry-After": "60"})
        except (
            ValueError,
            InternalError,
            InvalidAccessError,
            InvalidStateError,
            OperationError,
        ) as e:
            return refuse(400, f"offer rejected: {' '.join(str(e).split())[:200]}", **_CORS)
        except Exception:
            # aiortc failing deep inside on an offer that passed our checks: this offer
            # cannot be answered, others can. The traceback is for us (the fuzz tests
            # fail on it), the client gets a 400.
            logger.exception("offer from %s broke negotiation", request.remote)
            return refuse(400, "offer rejected: it could not be negotiated", **_CORS)
        location = f"{SESSIONS_PATH}/{session.id}"
        response = web.Response(
            status=201,
            body=answer.encode(),
            headers={
                **_CORS,
                "Content-Type": "application/sdp",
                "Location": location,
                "ETag": f'"{session.id}"',
            },
        )
        self._ice_headers(response, session.ice.for_viewer)
        return response

    def _own_session(self, request: web.Request) -> ViewerSession | None:
        """The session named in the path, if this caller opened it (or is an admin)."""
        session = self._sessions.get(request.match_info["id"])
        principal = principal_of(request)
        if session is None or principal is None:
            return None
        if session.owner != principal.name and principal.role != "admin":
            return None  # as if it did not exist: ids of others are not confirmed
        return session

    async def trickle(self, request: web.Request) -> web.Response:
        session = self._own_session(request)
        if session is None:
            return refuse(404, "no such session", **_CORS)
        text = await self._read_text(request, "application/trickle-ice-sdpfrag")
        if isinstance(text, web.Response):
            return text
        try:
            candidates, ufrag = parse_sdpfrag(text)
        except ValueError as error:
            return refuse(400, f"bad sdpfrag: {error}", **_CORS)
        if ufrag is not None and ufrag != session.plan.ice_ufrag:
            # A new ufrag is an ICE restart (RFC 8840); a fresh session does the same job.
            return refuse(422, "ICE restart is not supported; start a new session", **_CORS)
        session.add_candidates(candidates)
        return web.Response(status=204, headers=_CORS)

    async def hang_up(self, request: web.Request) -> web.Response:
        session = self._own_session(request)
        if session is None:
            return refuse(404, "no such session", **_CORS)
        await session.close()
        return web.Response(status=200, headers=_CORS)


def parse_sdpfrag(text: str) -> tuple[list[RTCIceCandidate], str | None]:
    """Candidates from a trickle-ice-sdpfrag (RFC 8840), and the ICE ufrag it names."""
    candidates = []
    mid: str | None = None
    index = -1
    ufrag: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :]
        elif line.startswith("a=candidate:"):
            try:
                candidate = candidate_from_sdp(line[len("a=candidate:") :])
            # aiortc's parser asserts on short lines and int()s its numbers.
            except (ValueError, IndexError, AssertionError):
                raise ValueError(f"unreadable candidate line {line[:80]!r}") from None
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = max(index, 0)
            candidates.append(candidate)
    return candidates, ufrag
