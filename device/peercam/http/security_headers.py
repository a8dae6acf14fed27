"""Headers that keep the camera's pages from being framed, sniffed, leaked or injected.

The page loads only its own files: no inline script (CSP forbids it), no third-party
origin, and it may not be framed by another site (clickjacking the Open door button).
"""

from __future__ import annotations

from aiohttp import hdrs, web

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",  # fetch for WHEP and the /events WebSocket, same origin
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

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
