"""aiohttp's connection protocol, with peercam's own answer to requests it cannot parse.

aiohttp answers a request it cannot parse (a line over 8,190 bytes, more than 128
headers, a control character in a header, a lowercase method) before any route or
middleware sees it: a 400 echoing the offending bytes, an Authorization header among
them, without the security headers, and a traceback at ERROR in the log. Anyone on the
network could fill the log (an SD card) with it and put a credential in it. Here such a
request gets a one-line 400 with the headers every response carries, and one line at
INFO naming the kind of fault, never the bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from peercam.http.security_headers import add_security_headers

logger = logging.getLogger(__name__)

# Most specific first: BadHttpMethod is a BadStatusLine, all are BadHttpMessage.
_FAULTS: list[tuple[type[BaseException], str]] = [
    (http_exceptions.LineTooLong, "a line or header too long"),
    (http_exceptions.BadHttpMethod, "an invalid method"),
    (http_exceptions.BadStatusLine, "an invalid request line"),
    (http_exceptions.InvalidHeader, "an invalid header"),
    (http_exceptions.InvalidURLError, "an invalid URL"),
    (http_exceptions.PayloadEncodingError, "an invalid body encoding"),
]


def describe(error: BaseException | None) -> str:
    """What was wrong, in words chosen here: aiohttp's messages quote the request."""
    for kind, words in _FAULTS:
        if isinstance(error, kind):
            return words
    if isinstance(error, http_exceptions.HttpProcessingError):
        # The one message that quotes nothing and has no class of its own.
        if "Too many headers" in error.message:
            return "too many headers"
    return "a malformed request"


class QuietRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # A fault of the daemon's (the error middleware catches handlers' own):
            # aiohttp's report with its traceback is what finding it needs.
            response = super().handle_error(request, status, exc, message)
            add_security_headers(response)
            return response
        if request.writer.output_size > 0:
            # As aiohttp does: part of a response is out, another cannot follow.
            raise ConnectionError("a response was already being sent")
        what = describe(exc)
        logger.info("refused a malformed request from %s: %s", request.remote or "?", what)
        response = web.Response(status=status, text=f"malformed request: {what}\n")
        add_security_headers(response)
        response.force_close()
        return response


def quiet_handlers(server: web.Server, **options: Any) -> Callable[[], RequestHandler]:
    """A protocol factory for `server` (a runner's) making QuietRequestHandlers with
    `options` (RequestHandler's keywords: keepalive_timeout, access_log…). The daemon
    accepts connections itself (connection_guard.py), so it chooses the protocol class
    without reaching into aiohttp's server."""

    def make() -> RequestHandler:
        return QuietRequestHandler(server, loop=asyncio.get_running_loop(), **options)

    return make
