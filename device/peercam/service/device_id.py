"""The camera's own identifier: made once, kept in the state directory. Home
Assistant knows the camera by it over MQTT, and ONVIF reports it as the serial
number and builds the discovery address from it, so it must not change."""

from __future__ import annotations

import secrets
from pathlib import Path

from peercam.service.private_file import write_private

# Named for its first user; kept so that cameras already set up keep their identity.
DEVICE_ID_FILE = "mqtt-device-id"


def device_id(state_dir: Path) -> str:
    """Blocking (a file): call it from a thread."""
    path = state_dir / DEVICE_ID_FILE
    try:
        kept = path.read_text().strip()
        if kept.isalnum():
            return kept
    except FileNotFoundError:
        pass
    made = secrets.token_hex(6)
    write_private(path, made.encode())
    return made
