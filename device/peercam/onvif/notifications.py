"""The doorbell's events as ONVIF properties, in the topics and items Home
Assistant's parser reads (onvif-parsers, registered under these topic names):

- motion: tns1:RuleEngine/CellMotionDetector/Motion, Data IsMotion, true at the first
  movement and false once nothing has moved for MOTION_HOLD (motion/hold.py);
- a ring: tns1:RuleEngine/MyRuleDetector/Visitor, Source "Source", Data State, true
  while the doorbell rings and false when it is answered, declined or missed (a ring
  that does not start ringing, e.g. during a call, is a true followed by a false).

Both are properties: a new subscriber is told their current values ("Initialized")."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from peercam.events import Answered, Declined, Event, Missed, Motion, Ring
from peercam.motion.hold import MotionHold

MOTION_TOPIC = "tns1:RuleEngine/CellMotionDetector/Motion"
VISITOR_TOPIC = "tns1:RuleEngine/MyRuleDetector/Visitor"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"

Operation = Literal["Initialized", "Changed"]


@dataclass(frozen=True)
class Notification:
    topic: str
    source: tuple[tuple[str, str], ...]  # (Name, Value) SimpleItems, in order
    data: tuple[tuple[str, str], ...]
    at: datetime.datetime
    operation: Operation


class DoorbellProperties:
    """Follows the event bus's events (fed by the caller) and tells `publish` each
    change of the two properties."""

    def __init__(self, publish: Callable[[Notification], None]) -> None:
        self._publish = publish
        self._visitor = False
        self._motion = MotionHold(lambda on: self._changed(MOTION_TOPIC, on))

    def follow(self, event: Event) -> None:
        if isinstance(event, Motion):
            self._motion.moved()
        elif isinstance(event, Ring):
            if not self._visitor:
                self._visitor = True
                self._changed(VISITOR_TOPIC, True)
            if event.call != "ringing":
                self._visitor = False
                self._changed(VISITOR_TOPIC, False)
        elif isinstance(event, Answered | Declined | Missed) and self._visitor:
            self._visitor = False
            self._changed(VISITOR_TOPIC, False)

    def current(self) -> list[Notification]:
        return [
            _notification(MOTION_TOPIC, self._motion.on, "Initialized"),
            _notification(VISITOR_TOPIC, self._visitor, "Initialized"),
        ]

    def close(self) -> None:
        self._motion.close()

    def _changed(self, topic: str, value: bool) -> None:
        self._publish(_notification(topic, value, "Changed"))


def _notification(topic: str, value: bool, operation: Operation) -> Notification:
    flag = "true" if value else "false"
    now = datetime.datetime.now(datetime.UTC)
    if topic == MOTION_TOPIC:
        source = (
            ("VideoSourceConfigurationToken", VIDEO_SOURCE_CONFIG),
            ("VideoAnalyticsConfigurationToken", "Analytics_1"),
            ("Rule", "MotionRule"),
        )
        return Notification(topic, source, (("IsMotion", flag),), now, operation)
    return Notification(
        topic, (("Source", VIDEO_SOURCE_CONFIG),), (("State", flag),), now, operation
    )
