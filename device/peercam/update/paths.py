"""Where updates are trusted from and installed to.

Not settings in peercam.toml: the daemon may write that file (the settings page), and
the updater runs as root, so what root trusts must not be the daemon's to choose. The
image puts the keys on the read-only root; the environment (set by root's units, or
by a test) may point elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

KEYS_VARIABLE = "PEERCAM_UPDATE_KEYS"
RELEASES_VARIABLE = "PEERCAM_RELEASES"


def trusted_keys_dir() -> Path:
    return Path(os.environ.get(KEYS_VARIABLE, "/usr/share/peercam/update-keys"))


def releases_dir() -> Path:
    return Path(os.environ.get(RELEASES_VARIABLE, "/var/lib/peercam-releases"))
