"""Access control for every route: who the request is, and whether it may do this.

The table below is the whole policy. A route not named in it needs a logged-in
viewer, so a new handler is never public by accident.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.login_sessions import COOKIE
from peercam.auth.principal import Principal, Role
from peercam.http.errors import refuse

logger = logging.getLogger(__name__)

# The service worker and the manifest: a browser fetches the manifest without the
# login cookie. A ring's picture (webpush/) is named by an unguessable token that only
# the encrypted push message carries. The phone pairing for remote access (remote/
# pairing_api.py) is not logged in: its request's MAC proves it holds the admin's
# code; the camera's id it may need first is no secret. The first run's setup
# (http/setup.py) proves itself with the one-time setup code.
PUBLIC_PATHS = frozenset(
    {
        "/healthz", "/login", "/logout", "/sw.js", "/manifest.webmanifest",
        "/pair", "/api/remote/pair", "/api/remote/camera", "/setup", "/api/setup",
    }
)  # fmt: skip
PUBLIC_PREFIXES = ("/ui/", "/push/ring/")
ADMIN_ROUTES = frozenset(
    {("POST", "/api/ring"), ("POST", "/api/events"), ("POST", "/api/push/decline")}
)
# Deleting a clip is for admins; watching one is for every viewer.
ADMIN_PREFIXES = frozenset({("DELETE", "/api/clips/")})
# Every method: pairing offers, the paired devices and unpairing; the settings page,
# its settings, users, tokens and updates.
ADMIN_ONLY_PREFIXES = (
    "/api/remote/", "/settings", "/welcome", "/api/settings", "/api/users", "/api/tokens",
    "/api/update",
)  # fmt: skip
SETUP_NEEDED = (
    "no admin password is set yet: open the camera's page and enter its setup code "
    "(or run `peercam passwd` on the camera)"
)
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
    if path.startswith(ADMIN_ONLY_PREFIXES):
        return "admin"
    return "viewer"


def principal_of(request: web.Request) -> Principal | None:
    return request.get(_PRINCIPAL)


def cross_origin(request: web.Request) -> bool:
    """A browser request sent from a page of another origin (CSRF, or a WebSocket
    opened from someone else's page).

    Sec-Fetch-Site says where a request came from and no page can forge it, so it is
    checked first, then Origin: scheme, host and port, as browsers compare origins.
    `Origin: null` is a sandboxed frame or a local file, unless Sec-Fetch-Site says the
    request is our own (pages loaded under the former `Referrer-Policy: no-referrer`
    send null with their posts). A browser sends each header once: two are someone
    choosing which one we believe."""
    sites = request.headers.getall("Sec-Fetch-Site", [])
    origins = request.headers.getall(hdrs.ORIGIN, [])
    if len(sites) > 1 or len(origins) > 1:
        return True
    site = sites[0] if sites else None
    if site is not None and site not in ("same-origin", "none"):
        return True
    if not origins:
        return False
    if origins[0] == "null":
        return site != "same-origin"
    return not _same_origin(origins[0], request)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(r"(https?)://([^\s/?#@\[\]:]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")


def _same_origin(origin: str, request: web.Request) -> bool:
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return False
    scheme, host, port_text = match.groups()
    if request.secure:
        schemes = {"https"}
    else:
        # Without TLS the daemon is behind a reverse proxy that does HTTPS (the only
        # safe way to run it so): the browser's origin is the proxy's, https.
        schemes = {"http", "https"}
    served = urlsplit(f"//{request.host}")
    try:
        served_port = served.port
    except ValueError:
        return False
    port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    return (
        scheme in schemes
        and host.lower().strip("[]") == (served.hostname or "")
        and port == (served_port or _DEFAULT_PORTS[scheme])
    )


def _state_changing(request: web.Request) -> bool:
    # Whatever the Upgrade header says: aiohttp's handshake accepts `websocket` followed
    # by any Unicode space, so a request asking for an upgrade at all may become one.
    upgrade = hdrs.UPGRADE in request.headers or hdrs.SEC_WEBSOCKET_KEY in request.headers
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
            return refuse(503, SETUP_NEEDED)
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
                "refused cross-origin %s %s from %s (Origin %r)",
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
