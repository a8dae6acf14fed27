"""A kept release on trial: which release an update kept, when, and the one before it.

Kept in a file of its own rather than read from the last update's status: an upload
refused or failed after the update was kept replaces the status, and must not end the
trial of the release still running."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from peercam.service.private_file import write_durably

TRIAL_FILE = "trial.json"


@dataclass(frozen=True)
class Trial:
    version: str
    release: str  # the kept release's path
    previous: str  # the release before it (a path)
    kept_at: float  # wall-clock time


def start_trial(directory: Path, trial: Trial) -> None:
    write_durably(directory / TRIAL_FILE, json.dumps(asdict(trial)).encode(), 0o644)


def read_trial(directory: Path) -> Trial | None:
    try:
        return Trial(**json.loads((directory / TRIAL_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def end_trial(directory: Path) -> None:
    (directory / TRIAL_FILE).unlink(missing_ok=True)
