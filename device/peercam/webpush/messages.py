"""What each doorbell event says on a phone's lock screen: the push message's JSON,
read by the service worker (web/sw.js), which shows it as a notification.

A push message holds at most about 4 KB, so the ring's picture travels as a link the
service worker fetches. All notifications of one ring share a tag: a second ring, an
answer or a missed ring replace the notification instead of adding one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from peercam.events import Answered, ClipSaved, Declined, Event, Missed, Motion, Ring

RING_TAG = "peercam-ring"


@dataclass(frozen=True)
class Message:
    kind: str  # "ring", "ring-over", "motion", "clip", "test": what users choose by
    body: dict[str, Any]
    ttl: int  # seconds a push service keeps it for a device that is away
    urgency: str  # RFC 8030: "high" wakes a sleeping phone at once
    # RFC 8030: a newer message with the same topic replaces one not yet delivered,
    # so a phone coming back online hears "answered", not the stale ring first.
    topic: str | None = None
    created: float = 0.0

    def for_user(self, admin: bool) -> dict[str, Any]:
        """Answer and Decline only for those who may (the daemon checks anyway)."""
        if admin or "actions" not in self.body:
            return self.body
        return {**self.body, "actions": []}


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def ring(event: Ring, ring_id: str, image: str | None, ring_timeout: float) -> Message:
    body: dict[str, Any] = {
        "kind": "ring",
        "tag": RING_TAG,
        "title": "Someone is at the door",
        "body": f"Rang at {_clock(event.at)}",
        "ring": ring_id,
        "at": event.at,
        "url": f"/?answer={ring_id}",
        "actions": [
            {"action": "answer", "title": "Answer"},
            {"action": "decline", "title": "Decline"},
        ],
        "requireInteraction": True,
        "renotify": True,
    }
    if image:
        body["image"] = image
    # Past the ring timeout nobody can answer: a later delivery would only mislead.
    return Message("ring", body, max(1, int(ring_timeout)), "high", "ring", time.monotonic())


def ring_over(event: Answered | Declined | Missed, ring_id: str | None) -> Message:
    if isinstance(event, Missed):
        at = event.at if event.at is not None else time.time()
        title, text, silent = "Missed ring", f"Nobody answered at {_clock(at)}", False
    elif isinstance(event, Answered):
        title, text, silent = f"Answered by {event.by}", "", True
    else:
        title, text, silent = f"Declined by {event.by}", "", True
    body = {
        "kind": "ring-over",
        "tag": RING_TAG,
        "title": title,
        "body": text,
        "ring": ring_id,
        "url": "/",
        "silent": silent,
    }
    return Message("ring-over", body, 3600, "high", "ring", time.monotonic())


def motion(event: Motion) -> Message:
    body = {
        "kind": "motion",
        "tag": "peercam-motion",
        "title": "Motion at the door",
        "body": f"At {_clock(event.at)}",
        "url": "/",
    }
    return Message("motion", body, 600, "normal", "motion", time.monotonic())


def clip(event: ClipSaved) -> Message:
    body = {
        "kind": "clip",
        "tag": "peercam-clip",
        "title": "New clip",
        "body": f"{event.trigger.capitalize()} at {_clock(event.at)}",
        "url": "/?clips",
    }
    return Message("clip", body, 86400, "normal", None, time.monotonic())


def test(user: str) -> Message:
    body = {
        "kind": "test",
        "tag": "peercam-test",
        "title": "peercam test",
        "body": f"Notifications reach this device ({user})",
        "url": "/",
    }
    return Message("test", body, 60, "normal", None, time.monotonic())


def is_ring_over(event: Event) -> bool:
    return isinstance(event, Answered | Declined | Missed)
