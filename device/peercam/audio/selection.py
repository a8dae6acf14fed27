"""Which microphone: the configured ALSA device, or for "auto" the board's sound card
when it has one, else the built-in test tone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peercam.audio.alsa_microphone import AlsaMicrophone, AlsaSettings, import_alsaaudio
from peercam.capture.source import Source
from peercam.capture.test_tone import TestToneMicrophone
from peercam.config import AudioConfig

logger = logging.getLogger(__name__)


def sound_card_present() -> bool:
    cards = Path("/proc/asound/cards")
    try:
        return any(line[:3].strip().isdigit() for line in cards.read_text().splitlines())
    except OSError:
        return False


def choose_microphone(config: AudioConfig) -> Source[Any] | None:
    if not config.enabled:
        return None
    use_alsa = config.source == "alsa" or (
        config.source == "auto" and sound_card_present() and import_alsaaudio() is not None
    )
    if not use_alsa:
        logger.info("microphone: built-in %.0f Hz test tone", config.tone_hz)
        return TestToneMicrophone(config.tone_hz)
    logger.info("microphone: ALSA %s, %d Hz, %d channel(s)", config.device, config.rate,
                config.channels)  # fmt: skip
    return AlsaMicrophone(AlsaSettings(config.device, config.rate, config.channels))
