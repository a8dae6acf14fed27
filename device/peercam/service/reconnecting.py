"""Keeping a link to something that comes and goes (an MQTT broker, a rendezvous):
tried again and again with growing waits, until the task that runs it is cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

BACKOFF = (1.0, 60.0)

Link = Callable[[Callable[[], None]], Awaitable[None]]


async def keep_linked(
    link: Link,
    label: str,
    expected: tuple[type[BaseException], ...],
    backoff: tuple[float, float] = BACKOFF,
    on_down: Callable[[], None] = lambda: None,
) -> None:
    """Run `link(linked)` forever: it returns or raises when the link ends, and calls
    `linked()` once it is up, which makes the next wait the shortest again. An
    `expected` error is one line in the log; any other, a fault of ours, is logged
    with its traceback and retried too, so that one bug does not end the link for
    good. `on_down` runs each time the link ends."""
    wait = backoff[0]

    def linked() -> None:
        nonlocal wait
        wait = backoff[0]

    while True:
        try:
            await link(linked)
        except expected as error:
            logger.warning("%s: %s; retrying in %.0f s", label, error, wait)
        except Exception:
            logger.exception("%s: failed; retrying in %.0f s", label, wait)
        finally:
            on_down()
        await asyncio.sleep(wait)
        wait = min(wait * 2, backoff[1])
