"""Files written whole or not at all: secrets (credentials, keys, the Wi-Fi
passphrase) readable by their owner only, and state others read."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, content: bytes) -> None:
    """Replace `path` atomically with a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_durably(path, content, 0o600)


def write_durably(path: Path, content: bytes, mode: int) -> None:
    """Replace `path` atomically and durably with a new file of `mode`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # A new file, never one already there: root writes into directories the service
    # user owns, where a link left at this name must not lead the write elsewhere.
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    # The rename itself must reach the disk too: a camera is switched off by pulling
    # its plug, and the boot partition's FAT otherwise keeps the old entry, or none.
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
