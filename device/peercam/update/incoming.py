"""Where the daemon leaves a bundle uploaded on the page. The daemon cannot install it
(it runs unprivileged, and an update restarts it): systemd's peercam-update.path sees
the file appear and starts peercam-update.service, which runs `peercam update
--uploaded` as root."""

from __future__ import annotations

from pathlib import Path

INCOMING_NAME = "incoming.bundle"


def incoming_directory(state_dir: Path) -> Path:
    return state_dir / "update"
