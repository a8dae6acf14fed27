"""Listening for a service that is on by default (RTSP, ONVIF): another program on
the board holding its port (MediaMTX, a second camera program) must not keep the
camera from the page, so the service goes on without the port and takes it once it
is free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

RETRY = (5.0, 60.0)  # seconds, first and longest wait between tries


async def listen_now_or_later(
    listen: Callable[[], Awaitable[None]], label: str, port: int, setting: str
) -> asyncio.Task[None] | None:
    """Run `listen`; if its port cannot be had, log why and return the task that keeps
    trying (its owner cancels it), else None. `setting` names the config keys."""
    try:
        await listen()
        return None
    except OSError as error:
        logger.error(
            "%s: cannot listen on port %d (%s); going on without it, trying again every "
            "%.0f-%.0f s (set %s)",
            label, port, error.strerror or error, *RETRY, setting,
        )  # fmt: skip
    return asyncio.create_task(_retry(listen), name=f"listen-later {label}")


async def _retry(listen: Callable[[], Awaitable[None]]) -> None:
    wait = RETRY[0]
    while True:
        await asyncio.sleep(wait)
        try:
            await listen()
            return
        except OSError:
            wait = min(wait * 2, RETRY[1])
