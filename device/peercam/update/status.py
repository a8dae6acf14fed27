"""What the last update did, kept beside the releases: the updater writes it, the
daemon's page reads it (an update restarts the daemon, so the page cannot be told
any other way), and the next boot reads it to finish an update a power cut stopped."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from peercam.service.private_file import write_durably

State = Literal["installing", "switched", "kept", "rolled_back", "refused", "failed"]
STATUS_FILE = "status.json"


@dataclass(frozen=True)
class UpdateStatus:
    state: State
    version: str  # the release the update was to
    previous: str = ""  # the release that ran before it (a path)
    release: str = ""  # the new release's path, once installed
    reason: str = ""  # why it was refused, failed or rolled back
    started: float = field(default_factory=time.time)
    finished: float | None = None
    # Measured for the note and the page: seconds to install, and from the switch to
    # the new daemon's ready and self-checked (or the rollback's).
    install_seconds: float | None = None
    switch_seconds: float | None = None

    def ended(self, state: State, **changes: object) -> UpdateStatus:
        values = {**asdict(self), **changes, "state": state, "finished": time.time()}
        return UpdateStatus(**values)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def write_status(directory: Path, status: UpdateStatus) -> None:
    """Replace the status file whole and durably (world-readable: the daemon reads it)."""
    directory.mkdir(parents=True, exist_ok=True)
    content = json.dumps(status.to_json(), indent=1).encode()
    write_durably(directory / STATUS_FILE, content, 0o644)


def read_status(directory: Path) -> UpdateStatus | None:
    try:
        body = json.loads((directory / STATUS_FILE).read_text())
        return UpdateStatus(**body)
    except (OSError, ValueError, TypeError):
        return None
