"""peercam's own settings from the boot partition, into /etc/peercam/peercam.toml.

Any setting of peercam.toml may be written as `section.key = value`
(`gpio.doorbell_pin = 17`); the commonest have short names (`camera = picamera2`).
Each is checked against the daemon's own config model before it is written: a bad
value is left out with a message, so the daemon always starts, on defaults where the
card was wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit

from peercam.config import ConfigError, build_config
from peercam.settings.config_file import ConfigFile, SettingsRefused

SHORT_NAMES = {
    "camera": "camera.source",
    "resolution": "camera.size",
    "fps": "camera.fps",
    "doorbell_pin": "gpio.doorbell_pin",
    "door_relay_pin": "gpio.relay_pin",
}


def is_setting(key: str) -> bool:
    return key in SHORT_NAMES or "." in key


def _candidates(raw: str) -> list[Any]:
    # The card holds text; lists are written comma-separated (`video.codecs = h264, vp8`).
    return [raw, [part.strip() for part in raw.split(",") if part.strip()]]


def apply_settings(settings: dict[str, tuple[int, str]], config_file: Path) -> list[str]:
    """`settings`: key → (line number, text). Returns problems, one per bad line."""
    if not settings:
        return []
    problems: list[str] = []
    file = ConfigFile(config_file)
    try:
        document = file.read()
        build_config(document.unwrap())
    except ConfigError as error:
        # A config the daemon would refuse must not keep the camera down.
        aside = config_file.with_name(config_file.name + ".invalid")
        config_file.replace(aside)
        problems.append(f"{config_file} was invalid ({error}); moved to {aside.name}")
        document = tomlkit.document()
    for key, (line, raw) in sorted(settings.items(), key=lambda item: item[1][0]):
        dotted = SHORT_NAMES.get(key, key)
        # An empty value puts the setting back to its default.
        candidates = [None] if raw == "" else _candidates(raw)
        failures: list[str] = []
        for value in candidates:
            try:
                document, _ = file.plan({dotted: value}, document)
            except SettingsRefused as refused:
                failures.append(refused.errors.get(dotted, str(refused)))
                continue
            break
        else:
            why = failures[0]
            reason = f"unknown key {dotted}" if why == "unknown key" else f"{dotted}: {why}"
            problems.append(f"line {line}: {key} = {raw[:40]!r} not used: {reason}")
    file.save(document)
    return problems
