"""Where the daemon keeps what it must remember: credentials and its certificate."""

from __future__ import annotations

import os
from pathlib import Path


def state_directory(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    # systemd's StateDirectory= sets it (a colon-separated list when several).
    given = os.environ.get("STATE_DIRECTORY")
    if given:
        return Path(given.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/peercam")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "peercam"
