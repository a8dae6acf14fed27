"""The card's root file system and its boot partition are mounted read-only
(image-build/README.md, "Storage"); first boot, a changed peercam.txt or time zone
later, and the setup code shown on the card are the rare moments that change them.
A file system is remounted writable for the step that needs it and read-only again
straight after, so a plug pulled at any other time finds nothing half-written there
(and the boot partition's FAT not even marked dirty)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from peercam.firstboot.system_root import SystemRoot

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _read_only(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _mount_point(path: Path) -> str:
    """Where the file system holding `path` (or its nearest existing parent) is mounted."""
    point = os.path.realpath(path)
    while not os.path.exists(point):
        point = os.path.dirname(point)
    while not os.path.ismount(point):
        point = os.path.dirname(point)
    return point


def _remount(mode: str, point: str) -> bool:
    done = subprocess.run(
        ["mount", "-o", f"remount,{mode}", point], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        logger.warning("remounting %s %s: %s", point, mode, done.stderr.strip())
    return done.returncode == 0


@contextmanager
def writable(root: SystemRoot, *paths: Path) -> Iterator[None]:
    """The file systems holding `paths` writable inside, read-only again after if they
    were (a live root only)."""
    if not root.live:
        yield
        return
    made: list[str] = []
    try:
        for point in sorted({_mount_point(path) for path in paths}):
            if _read_only(point):
                if not _remount("rw", point):
                    raise OSError(errno.EROFS, f"{point} stays read-only")
                made.append(point)
        yield
    finally:
        if made:
            os.sync()
        for point in reversed(made):
            if not _remount("ro", point):
                # A file still open for writing: the next boot mounts it read-only again.
                logger.warning("%s stays writable until the next boot", point)


def writable_root(root: SystemRoot) -> AbstractContextManager[None]:
    """`/` writable inside, as it was after."""
    return writable(root, Path("/"))


def on_read_only(root: SystemRoot, step: Callable[[], T], *paths: Path) -> T:
    """Run `step`; if it meets a read-only file system, again with those holding
    `paths` writable (`/` if none named). The steps given are idempotent: each writes
    whole files, renamed into place."""
    try:
        return step()
    except OSError as error:
        if error.errno != errno.EROFS or not root.live:
            raise
    logger.info("a read-only file system: made writable for this step")
    with writable(root, *(paths or (Path("/"),))):
        return step()


def commit_machine_id(root: SystemRoot) -> bool:
    """The machine id, made by systemd at the first boot and kept only in memory while
    the root is read-only (a transient mount over /etc/machine-id), written to the
    card: DHCP's client id and the journal's directory follow it, so it must stay the
    same across boots and differ between cameras flashed from one image."""
    if not root.live or not os.path.ismount("/etc/machine-id"):
        return False
    with writable_root(root):
        done = subprocess.run(
            ["systemd-machine-id-setup", "--commit"], capture_output=True, text=True, timeout=60
        )
    if done.returncode != 0:
        raise OSError(f"systemd-machine-id-setup --commit: {done.stderr.strip()}")
    return True
