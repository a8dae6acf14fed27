"""Server push: every open page receives each event (ring, motion, call state, door)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class EventBus:
    """Each subscriber gets a bounded queue: a page that stops reading loses old
    events, never the daemon's memory or the other pages' events."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._queues: set[asyncio.Queue[Event]] = set()

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._capacity)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._queues.discard(queue)

    def publish(self, event: Event) -> None:
        logger.info("event %s", event)
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
