"""Headers that keep the camera's pages from being framed, sniffed, leaked or injected.

The page loads only its own files: no inline script (CSP forbids it), no third-party
origin, and it may not be framed by another site (clickjacking the Open door button).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web


def content_security_policy(connect: list[str]) -> str:
    """`connect`: origins beyond the camera's own the page may connect to (the
    remote-access broker's WebSocket)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob: mediastream:",
            # fetch for WHEP and the /events WebSocket: same origin.
            " ".join(["connect-src 'self'", *connect]),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy([])

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Nothing to other sites; to our own, the full URL, and so with posts and fetches
    # the page's real Origin, which the cross-site check compares (no-referrer made
    # it `null`, leaving only Sec-Fetch-Site, which older browsers do not send).
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(self), geolocation=()",
}

# aiohttp's default names the Python and aiohttp versions: a list of known flaws to
# look up, for anyone who asks.
SERVER = "peercam"


def add_security_headers(response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers[hdrs.SERVER] = SERVER


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For `on_response_prepare`: it sees every response as it is sent, raised ones
    (redirects, refusals) and WebSocket handshakes too, which a middleware does not."""
    add_security_headers(response)


def security_headers_connecting_to(
    urls: list[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """security_headers, with the origins of `urls` (ws:// or wss://) allowed to
    the page's connections too."""
    origins = [f"{u.scheme}://{u.netloc}" for u in map(urlsplit, urls) if u.scheme and u.netloc]
    policy = content_security_policy(origins)

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", policy)
        add_security_headers(response)

    return prepare
