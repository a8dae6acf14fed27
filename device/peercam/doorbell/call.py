"""The doorbell's call: idle → ringing → in a call → idle.

A ring (button, `POST /api/ring`, `peercam ring`) rings every open page; the first
viewer to answer takes the call and the floor (talkback starts), and the other pages
stop ringing. A ring nobody answers times out. Every change is published to all pages.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

from peercam.audio.talkback import Outcome, Talkback
from peercam.doorbell.hardware import DoorbellHardware
from peercam.events import (
    Answered,
    CallEnded,
    CallSnapshot,
    Declined,
    DoorOpened,
    EventBus,
    Missed,
    Motion,
    Ring,
    TalkFloor,
)

logger = logging.getLogger(__name__)


class CallState(enum.Enum):
    IDLE = "idle"
    RINGING = "ringing"
    IN_CALL = "in-call"


class Doorbell:
    def __init__(
        self,
        events: EventBus,
        talkback: Talkback,
        ring_timeout: float,
        door_pulse: float,
    ) -> None:
        self.events = events
        self.talkback = talkback
        self.hardware = DoorbellHardware()
        self.state = CallState.IDLE
        self._ring_timeout = ring_timeout
        self._door_pulse = door_pulse
        self._timeout: asyncio.TimerHandle | None = None
        self._call_holder: str | None = None
        self._rang_at: float | None = None

    @property
    def call_holder(self) -> str | None:
        """Who is in the call (a viewer's session, a phone's call), if anyone."""
        return self._call_holder

    def snapshot(self) -> CallSnapshot:
        talker = self.talkback.floor.holder_label or None
        return CallSnapshot(self.state.value, talker, self._rang_at)

    def _set_state(self, state: CallState) -> None:
        self.state = state
        {
            CallState.IDLE: self.hardware.show_idle,
            CallState.RINGING: self.hardware.show_ringing,
            CallState.IN_CALL: self.hardware.show_call,
        }[state]()

    def ring(self, origin: str) -> None:
        self._rang_at = time.time()
        if self.state is CallState.IDLE:
            self._set_state(CallState.RINGING)
            self._timeout = asyncio.get_running_loop().call_later(
                self._ring_timeout, self._unanswered
            )
        # During a call a second press still tells everyone someone is at the door.
        self.events.publish(Ring(origin, self._rang_at, self.state.value))

    def motion(self) -> None:
        self.events.publish(Motion(time.time(), "sensor"))

    def _unanswered(self) -> None:
        self._timeout = None
        if self.state is CallState.RINGING:
            self._set_state(CallState.IDLE)
            self.events.publish(Missed(self._rang_at))

    def _cancel_timeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    async def answer(self, session_id: str, label: str) -> Outcome:
        if self.state is not CallState.RINGING:
            return Outcome(False, "nothing is ringing")
        floor = self.talkback.floor
        if floor.holder not in (None, session_id) and floor.holder_yields:
            logger.info("talkback: %s gives way to %s, who answered", floor.holder_label, label)
            await self.talkback.stop(floor.holder)
            self.events.publish(TalkFloor(None))
        outcome = await self.talkback.start(session_id, label)
        if not outcome.ok:
            return outcome
        self._cancel_timeout()
        self._call_holder = session_id
        self._set_state(CallState.IN_CALL)
        self.events.publish(Answered(label))
        return Outcome(True)

    async def decline(self, session_id: str, label: str) -> Outcome:
        if self.state is not CallState.RINGING:
            return Outcome(False, "nothing is ringing")
        self._cancel_timeout()
        self._set_state(CallState.IDLE)
        self.events.publish(Declined(label))
        return Outcome(True)

    async def hang_up(self, session_id: str, label: str) -> Outcome:
        if self.state is not CallState.IN_CALL or self._call_holder != session_id:
            return Outcome(False, "you are not in a call")
        await self._end_call(label)
        return Outcome(True)

    async def _end_call(self, label: str) -> None:
        holder, self._call_holder = self._call_holder, None
        if holder is not None:
            await self.talkback.stop(holder)
        self._set_state(CallState.IDLE)
        self.events.publish(CallEnded(label))

    async def talk(self, session_id: str, label: str, on: bool, yields: bool = False) -> Outcome:
        """Push-to-talk outside a call (a viewer speaking through the door). A talker
        that `yields` gives the floor up to whoever answers a ring."""
        if session_id == self._call_holder:
            return Outcome(True)  # in a call the floor is already theirs
        if on:
            outcome = await self.talkback.start(session_id, label, yields)
        else:
            outcome = await self.talkback.stop(session_id)
        if outcome.ok:
            self.events.publish(TalkFloor(label if on else None))
        return outcome

    async def open_door(self, session_id: str, label: str) -> Outcome:
        if not self.hardware.pulse_door(self._door_pulse):
            self.events.publish(DoorOpened(False, label))
            return Outcome(False, "no door relay is configured")
        self.events.publish(DoorOpened(True, label))
        return Outcome(True)

    async def session_gone(self, session_id: str) -> None:
        """A viewer left: a call or the floor it held must not outlive it."""
        if session_id == self._call_holder:
            await self._end_call("a viewer who left")
        elif self.talkback.floor.holder == session_id:
            await self.talkback.stop(session_id)
            self.events.publish(TalkFloor(None))

    async def close(self) -> None:
        self._cancel_timeout()
        if self._call_holder is not None:
            await self.talkback.stop(self._call_holder)
        self.hardware.close()
