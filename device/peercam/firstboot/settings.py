"""peercam's own settings from the boot partition, into /etc/peercam/peercam.toml.

Any setting of peercam.toml may be written as `section.key = value`
(`gpio.doorbell_pin = 17`); the commonest have short names (`camera = picamera2`).
Each is checked against the daemon's own config model before it is written: a bad
value is left out with a message, so the daemon always starts, on defaults where the
card was wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from peercam.config import Config, ConfigError, build_config
from peercam.service.private_file import write_private

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


def _try(data: dict[str, Any], section: str, key: str, value: Any) -> Config:
    trial = {name: dict(table) for name, table in data.items()}
    trial.setdefault(section, {})[key] = value
    return build_config(trial)


def apply_settings(settings: dict[str, tuple[int, str]], config_file: Path) -> list[str]:
    """`settings`: key → (line number, text). Returns problems, one per bad line."""
    if not settings:
        return []
    problems: list[str] = []
    data: dict[str, Any] = {}
    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        build_config(data)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as error:
        # A config the daemon would refuse must not keep the camera down.
        aside = config_file.with_name(config_file.name + ".invalid")
        config_file.replace(aside)
        problems.append(f"{config_file} was invalid ({error}); moved to {aside.name}")
        data = {}
    for key, (line, raw) in sorted(settings.items(), key=lambda item: item[1][0]):
        dotted = SHORT_NAMES.get(key, key)
        section, _, name = dotted.partition(".")
        if not name or "." in name:
            problems.append(f"line {line}: unknown setting {key}")
            continue
        if raw == "":
            # An empty value puts the setting back to its default.
            data.get(section, {}).pop(name, None)
            continue
        failures: list[ConfigError] = []
        for value in _candidates(raw):
            try:
                checked = _try(data, section, name, value)
            except ConfigError as failure:
                failures.append(failure)
                continue
            data.setdefault(section, {})[name] = checked.model_dump(mode="json")[section][name]
            break
        else:
            problems.append(f"line {line}: {key} = {raw[:40]!r} not used: {failures[0]}")
    write_private(config_file, tomli_w.dumps(data).encode())
    return problems
