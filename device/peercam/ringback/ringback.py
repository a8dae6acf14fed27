"""The visitor side of a ring: the Pi's speaker plays a ring-back tone while the bell
rings, stops the moment a viewer answers or declines, and says that nobody is
available when the ring goes unanswered.

An output (outputs/output.py) that listens to the doorbell's events. It plays through
talkback's speaker object (audio/alsa_speaker.py, as a "cue"), never a second open of
the device, so the tone and the viewer's voice cannot fight over the sound card: the
speaker itself gives the talker the device from the next period on, before the
Answered event has even reached this output. The LED is the doorbell's (doorbell/
hardware.py) and unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.config import ConfigError, RingbackConfig
from peercam.events import Answered, CallEnded, Declined, Event, EventBus, Missed, Ring
from peercam.outputs.output import Output, OutputContext
from peercam.ringback.sounds import DEFAULT_TONE, DEFAULT_UNANSWERED, SoundError, load_sound

logger = logging.getLogger(__name__)

# Seconds beyond its length that a message may take to reach the speaker (opening the
# device, a stall) before the device is let go regardless.
MESSAGE_SLACK = 3.0


class Ringback:
    def __init__(self, config: RingbackConfig, events: EventBus, speaker: AlsaSpeaker) -> None:
        self._config = config
        self._events = events
        self._speaker = speaker
        self._tone = b""
        self._unanswered = b""
        self._queue: asyncio.Queue[Event] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._message: asyncio.Task[None] | None = None
        # What this output last gave the speaker; None once it has ended it.
        self._playing: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return f"ring-back on {self._speaker.label}"

    async def start(self) -> None:
        config, settings = self._config, self._speaker.settings
        loads = (
            ("tone_file", config.tone_file, DEFAULT_TONE),
            ("unanswered_file", config.unanswered_file, DEFAULT_UNANSWERED),
        )
        sounds: list[bytes] = []
        for key, path, default in loads:
            try:
                sounds.append(
                    await asyncio.to_thread(
                        load_sound, path, default, settings.rate, settings.channels, config.volume
                    )
                )
            except SoundError as error:
                raise ConfigError(f"ringback.{key}: {error}") from None
        self._tone, self._unanswered = sounds
        self._queue = self._events.subscribe()
        self._listener = asyncio.create_task(self._listen(self._queue), name="ringback")

    async def _listen(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            if isinstance(event, Ring) and event.call == "ringing":
                self._ring()
            elif isinstance(event, Missed):
                self._say_nobody_is_available()
            elif isinstance(event, Answered | Declined | CallEnded):
                await self._silence()

    def _ring(self) -> None:
        # A second press while it rings keeps the tone going rather than restarting it.
        if self._playing is not None and not self._playing.done() and self._message is None:
            return
        self._cancel_message()
        self._playing = self._speaker.cue(self._tone, repeat=True)
        logger.info("ring-back: the visitor hears the ring-back tone")

    def _say_nobody_is_available(self) -> None:
        self._cancel_message()
        playing = self._playing = self._speaker.cue(self._unanswered, repeat=False)
        self._message = asyncio.create_task(self._release_after(playing), name="ringback-message")
        logger.info("ring-back: nobody answered; the visitor hears the message")

    async def _release_after(self, playing: asyncio.Future[None]) -> None:
        settings = self._speaker.settings
        seconds = len(self._unanswered) / (2 * settings.channels * settings.rate)
        # Bounded: a speaker that cannot open (no sound card) never finishes the message,
        # and must not be retried for good after every missed ring. The shield keeps the
        # cue itself alive when this task is cancelled.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(playing), seconds + MESSAGE_SLACK)
        self._message = None
        if self._playing is playing:
            await self._silence()

    def _cancel_message(self) -> None:
        if self._message is not None:
            self._message.cancel()
            self._message = None

    async def _silence(self) -> None:
        """End whatever this output plays and let the device go, unless someone talks."""
        self._cancel_message()
        if self._playing is not None:
            self._playing = None
            await self._speaker.end_cue()

    async def stop(self) -> None:
        for task in (self._listener, self._message):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._listener = self._message = None
        if self._queue is not None:
            self._events.unsubscribe(self._queue)
            self._queue = None
        await self._silence()


def build(context: OutputContext) -> list[Output]:
    config = context.config.ringback
    if not config.enabled or context.doorbell is None:
        return []
    speaker = context.doorbell.talkback.speaker
    if speaker is None:
        logger.info("ring-back: off, because talkback has no speaker ([talkback] enabled = false)")
        return []
    return [Ringback(config, context.events, speaker)]
