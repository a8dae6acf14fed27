"""Talkback: the viewer holding the floor is heard through the speaker.

Every viewer whose browser can send audio has its track drained all the time (aiortc
queues whatever arrives until it is read); only the holder's audio reaches the
speaker. Optionally half-duplex: the microphone is silenced while someone talks, so
the speaker's sound does not come back to the viewers as echo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.audio.floor import Floor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str = ""


class Talkback:
    def __init__(
        self, speaker: AlsaSpeaker | None, mute_microphone: Callable[[bool], None] | None
    ) -> None:
        self.speaker = speaker
        self._mute = mute_microphone
        self.floor = Floor()

    async def start(self, session_id: str, label: str, yields: bool = False) -> Outcome:
        if self.speaker is None:
            return Outcome(False, "talkback is off: no speaker is configured")
        if not self.floor.request(session_id, label, yields):
            return Outcome(False, f"{self.floor.holder_label} is talking; wait for them to stop")
        self.speaker.start()
        if self._mute is not None:
            self._mute(True)
        logger.info("talkback: %s has the floor", label)
        return Outcome(True)

    async def stop(self, session_id: str) -> Outcome:
        if not self.floor.release(session_id):
            return Outcome(False, "you are not talking")
        if self._mute is not None:
            self._mute(False)
        if self.speaker is not None:
            await self.speaker.stop()
        logger.info("talkback: floor released")
        return Outcome(True)

    def hear(self, session_id: str, frame: av.AudioFrame) -> None:
        """Audio from `session_id`: played if it holds the floor, dropped otherwise."""
        if self.floor.holder == session_id and self.speaker is not None:
            self.speaker.play(frame)

    async def listen(self, session_id: str, track: MediaStreamTrack) -> None:
        """Drain one viewer's microphone track for as long as the session lives."""
        try:
            while True:
                self.hear(session_id, await track.recv())  # type: ignore[arg-type]
        except MediaStreamError:
            pass
