"""A small form from a page: URL-encoded (a form posted without script) or a JSON
object (the page's fetch), both capped, both read into the same fields."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

MAX_FORM_BYTES = 4096


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    json_wanted: bool  # answered in JSON (the page's fetch), else by a redirect


async def read_form(request: web.Request, max_fields: int = 8) -> Form | None:
    """None for a body too big, of another type, or not a form or object."""
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        return None
    body = await request.content.read(MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        return None
    if request.content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or len(data) > max_fields:
            return None
        return Form({k: v for k, v in data.items() if isinstance(v, str)}, True)
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), max_num_fields=max_fields))
        except (UnicodeDecodeError, ValueError):
            return None
        return Form(fields, False)
    return None


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any] | None:
    """A JSON object of at most `max_bytes`; None for anything else."""
    if request.content_type != "application/json":
        return None
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
