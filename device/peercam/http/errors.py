"""Every refusal is one line of text with a 4xx status; no traceback ever reaches a client."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

logger = logging.getLogger(__name__)


def refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)


def refuse_field(status: int, reason: str, field: str | None = None) -> web.Response:
    """A refusal a page shows beside its form's `field` (none: above the form), as
    JSON: {"error": reason, "field": field}."""
    return web.json_response({"error": reason, "field": field}, status=status)


@web.middleware
async def plain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or (error.text and not error.text.startswith(f"{error.status}:")):
            raise
        # aiohttp's own refusals (404, 405, 413) as one plain line, like ours.
        return refuse(error.status, error.reason.lower(), **dict(error.headers))
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return refuse(500, "internal error (logged)")
