"""What happens at the door, as typed events, and the bus that carries them.

Every event is a frozen dataclass with a `type` name; `to_json` is the one place an
event becomes what the page (and later MQTT or a push message) receives. Events only
outputs care about (motion that goes on) stay inside the daemon: `for_pages` is False.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    type: ClassVar[str]
    for_pages: ClassVar[bool] = True


@dataclass(frozen=True)
class Ring(Event):
    """Someone rang: the button, the API or the command line (`origin`)."""

    type: ClassVar[str] = "ring"
    origin: str
    at: float
    # The call state after it ("idle", "ringing", "in-call"): a ring in a call stays one.
    call: str


@dataclass(frozen=True)
class Motion(Event):
    """Movement: seen by the camera (`origin` "camera") or a motion sensor's pin."""

    type: ClassVar[str] = "motion"
    at: float
    origin: str


@dataclass(frozen=True)
class MotionContinues(Event):
    """Movement already announced goes on: a clip being recorded keeps recording."""

    type: ClassVar[str] = "motion-continues"
    for_pages: ClassVar[bool] = False
    at: float


@dataclass(frozen=True)
class Missed(Event):
    type: ClassVar[str] = "missed"
    at: float | None


@dataclass(frozen=True)
class Answered(Event):
    type: ClassVar[str] = "answered"
    by: str


@dataclass(frozen=True)
class Declined(Event):
    type: ClassVar[str] = "declined"
    by: str


@dataclass(frozen=True)
class CallEnded(Event):
    type: ClassVar[str] = "ended"
    by: str


@dataclass(frozen=True)
class TalkFloor(Event):
    """Who speaks through the door now; None when nobody does."""

    type: ClassVar[str] = "talker"
    talker: str | None


@dataclass(frozen=True)
class DoorOpened(Event):
    type: ClassVar[str] = "door"
    opened: bool  # False: asked for, but no door relay is configured
    by: str


@dataclass(frozen=True)
class ClipSaved(Event):
    type: ClassVar[str] = "clip"
    id: str
    trigger: str
    at: float


@dataclass(frozen=True)
class RecordingSwitch(Event):
    """Asked to turn event clips on or off (Home Assistant's switch)."""

    type: ClassVar[str] = "recording-switch"
    for_pages: ClassVar[bool] = False
    on: bool
    by: str


@dataclass(frozen=True)
class RecordingState(Event):
    """Whether triggers make clips now."""

    type: ClassVar[str] = "recording"
    on: bool


@dataclass(frozen=True)
class CallSnapshot(Event):
    """Where the call stands, sent to each page as it connects."""

    type: ClassVar[str] = "state"
    call: str  # "idle", "ringing" or "in-call"
    talker: str | None
    rang_at: float | None


@dataclass(frozen=True)
class CommandResult(Event):
    """The answer to one page's command, sent to that page only."""

    type: ClassVar[str] = "result"
    cmd: object  # what the page sent, echoed even when it is not a known command
    ok: bool
    reason: str


def to_json(event: Event) -> dict[str, Any]:
    return {"type": event.type, **dataclasses.asdict(event)}


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
        # Continuing motion comes several times a second: not worth a log line each.
        logger.log(logging.INFO if event.for_pages else logging.DEBUG, "event %s", to_json(event))
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
