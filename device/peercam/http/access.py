"""Access control for every route: who the request is, and whether it may do this.

The table below is the whole policy. A route not named in it needs a logged-in
viewer, so a new handler is never public by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.login_sessions import COOKIE
from peercam.auth.principal import Principal, Role
from peercam.http.errors import refuse

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/login", "/logout"})
PUBLIC_PREFIXES = ("/ui/",)
ADMIN_ROUTES = frozenset({("POST", "/api/ring"), ("POST", "/api/events")})
# Deleting a clip is for admins; watching one is for every viewer.
ADMIN_PREFIXES = frozenset({("DELETE", "/api/clips/")})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PRINCIPAL = web.RequestKey("principal", Principal)


def needed_role(method: str, path: str) -> Role | None:
    """None for routes anyone may use."""
    # A CORS preflight never carries credentials; the request that follows does.
    if method == "OPTIONS" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if (method, path) in ADMIN_ROUTES:
        return "admin"
    if any(method == m and path.startswith(prefix) for m, prefix in ADMIN_PREFIXES):
        return "admin"
    return "viewer"


def principal_of(request: web.Request) -> Principal | None:
    return request.get(_PRINCIPAL)


def cross_origin(request: web.Request) -> bool:
    """A browser request sent from a page of another origin (CSRF, or a WebSocket
    opened from someone else's page).

    Our own pages send no referrer, and under that policy a browser sends
    `Origin: null` with their form posts and fetches; Sec-Fetch-Site still says where
    the request came from, so it is checked first, then any real Origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != request.host.lower()


def _state_changing(request: web.Request) -> bool:
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    return request.method not in _SAFE_METHODS or upgrade


def _wants_page(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get(hdrs.ACCEPT, "")


def _challenge(request: web.Request) -> str:
    # Offering Basic to the page's own fetch() calls would make the browser pop up its
    # password dialog; the page logs in through /login instead.
    if request.headers.get("Sec-Fetch-Mode") in ("cors", "same-origin"):
        return 'Bearer realm="peercam"'
    return 'Bearer realm="peercam", Basic realm="peercam", charset="UTF-8"'


class AccessControl:
    async def _identify(self, request: web.Request) -> Principal | None:
        return await self._auth.identify(
            request.cookies.get(COOKIE),
            request.headers.get(hdrs.AUTHORIZATION),
            request.remote or "",
        )

    async def _identify_quietly(self, request: web.Request) -> Principal | None:
        try:
            return await self._identify(request)
        except LoginThrottled:
            return None

    def __init__(
        self, authenticator: Authenticator, setup_page: Callable[[], web.Response]
    ) -> None:
        self._auth = authenticator
        self._setup_page = setup_page

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        role = needed_role(request.method, request.path)
        if request.path in ("/login", "/logout") and cross_origin(request):
            return refuse(403, "cross-origin request refused")
        if role is None:
            credentials = hdrs.AUTHORIZATION in request.headers or COOKIE in request.cookies
            if request.method == "OPTIONS" and credentials:
                # Not required, but a client that sends credentials with OPTIONS (the
                # page does, with its cookie) is shown its ICE servers.
                principal = await self._identify_quietly(request)
                if principal is not None:
                    request[_PRINCIPAL] = principal
            return await handler(request)
        if self._auth.setup_needed():
            if _wants_page(request):
                return self._setup_page()
            return refuse(503, "no admin password is set yet: run `peercam passwd` on the camera")
        try:
            principal = await self._identify(request)
        except LoginThrottled as error:
            return refuse(429, str(error), **{"Retry-After": f"{error.retry_after:.0f}"})
        if principal is None:
            if _wants_page(request):
                target = quote(request.path_qs, safe="/?=&")
                raise web.HTTPSeeOther(f"/login?next={target}")
            return refuse(401, "log in first", **{"WWW-Authenticate": _challenge(request)})
        if principal.proof == "cookie" and _state_changing(request) and cross_origin(request):
            logger.warning(
                "refused cross-origin %s %s from %s (Origin %s)",
                request.method,
                request.path,
                request.remote,
                request.headers.get(hdrs.ORIGIN),
            )
            return refuse(403, "cross-origin request refused")
        if not principal.may(role):
            return refuse(403, f"{request.method} {request.path} needs the {role} role")
        request[_PRINCIPAL] = principal
        return await handler(request)
