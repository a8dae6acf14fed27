"""The card's root file system is mounted read-only (image-build/README.md, "Storage");
first boot, and a changed peercam.txt or time zone later, are the rare moments that
change it. Root is remounted writable for the step that needs it and read-only again
straight after, so a plug pulled at any other time finds nothing half-written there."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from peercam.firstboot.system_root import SystemRoot

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _read_only(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _remount(mode: str) -> bool:
    done = subprocess.run(
        ["mount", "-o", f"remount,{mode}", "/"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        logger.warning("remounting / %s: %s", mode, done.stderr.strip())
    return done.returncode == 0


@contextmanager
def writable_root(root: SystemRoot) -> Iterator[None]:
    """`/` writable inside, as it was after (a live root only)."""
    if not root.live or not _read_only("/"):
        yield
        return
    if not _remount("rw"):
        raise OSError(errno.EROFS, "the root file system stays read-only")
    try:
        yield
    finally:
        os.sync()
        if not _remount("ro"):
            # A file still open for writing: the next boot mounts it read-only again.
            logger.warning("/ stays writable until the next boot")


def on_read_only_root(root: SystemRoot, step: Callable[[], T]) -> T:
    """Run `step`; if it meets the read-only root, again with the root writable. The
    steps given are idempotent: each writes whole files, renamed into place."""
    try:
        return step()
    except OSError as error:
        if error.errno != errno.EROFS or not root.live:
            raise
    logger.info("the root file system is read-only: made writable for this step")
    with writable_root(root):
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
