"""ONVIF PullPoint subscriptions (Events service §9.1 / WS-BaseNotification): each
keeps the notifications since its last pull, bounded; a pull waits for one up to its
timeout; a subscription not renewed by its termination time is dropped.

Home Assistant subscribes for 10 minutes, renews every 8 and pulls with a 60-second
timeout; a camera that keeps dead subscriptions runs out of them (HA's own comment),
so they are capped and reaped."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from peercam.onvif.notifications import Notification

MAX_PULL_POINTS = 8
MAX_KEPT = 100  # notifications a subscription holds between pulls; the oldest go
MAX_WAIT = 60.0  # seconds a pull is held at most
# Seconds a subscription lives without renewal, whatever it asks (the device may
# choose): an NVR that re-subscribes without unsubscribing must not fill the table.
MAX_LIFETIME = 3600.0
# A full table gives way to a subscription nobody has pulled for this long.
ABANDONED_AFTER = 180.0


class TooManyPullPoints(Exception):
    pass


class UnknownSubscription(Exception):
    pass


@dataclass
class PullPoint:
    id: str
    expires: float  # time.time()
    pulled: float = field(default_factory=time.monotonic)  # last pull, or made
    kept: deque[Notification] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class PullPoints:
    def __init__(self) -> None:
        self._points: dict[str, PullPoint] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._points)

    def create(self, lifetime: float) -> PullPoint:
        self.reap()
        if len(self._points) >= MAX_PULL_POINTS:
            oldest = min(self._points.values(), key=lambda p: p.pulled)
            if time.monotonic() - oldest.pulled < ABANDONED_AFTER:
                raise TooManyPullPoints(f"at most {MAX_PULL_POINTS} subscriptions")
            self.remove(oldest.id)
        point = PullPoint(secrets.token_hex(8), time.time() + _bounded(lifetime))
        self._points[point.id] = point
        return point

    def get(self, point_id: str) -> PullPoint:
        point = self._points.get(point_id)
        if point is None or point.expires <= time.time():
            self._points.pop(point_id, None)
            raise UnknownSubscription("no such subscription (it may have expired)")
        return point

    def renew(self, point_id: str, lifetime: float) -> PullPoint:
        point = self.get(point_id)
        point.expires = time.time() + _bounded(lifetime)
        return point

    def remove(self, point_id: str) -> None:
        point = self._points.pop(point_id, None)
        if point is None:
            raise UnknownSubscription("no such subscription")
        point.arrived.set()  # a pull waiting on it returns now

    def publish(self, notification: Notification) -> None:
        for point in self._points.values():
            point.kept.append(notification)
            point.arrived.set()

    def synchronize(self, point_id: str, current: list[Notification]) -> None:
        point = self.get(point_id)
        point.kept.extend(current)
        point.arrived.set()

    async def pull(self, point_id: str, wait: float, limit: int) -> list[Notification]:
        point = self.get(point_id)
        point.pulled = time.monotonic()
        if not point.kept and not self._closed:
            point.arrived.clear()
            try:
                async with asyncio.timeout(min(max(wait, 0.0), MAX_WAIT)):
                    await point.arrived.wait()
            except TimeoutError:
                pass
        taken: list[Notification] = []
        while point.kept and len(taken) < max(limit, 1):
            taken.append(point.kept.popleft())
        return taken

    def reap(self) -> None:
        now = time.time()
        for gone in [p for p in self._points.values() if p.expires <= now]:
            del self._points[gone.id]
            gone.arrived.set()

    def close(self) -> None:
        """Shutting down: every waiting pull returns at once."""
        self._closed = True
        for point in self._points.values():
            point.arrived.set()
        self._points.clear()


def _bounded(lifetime: float) -> float:
    return min(max(lifetime, 10.0), MAX_LIFETIME)
