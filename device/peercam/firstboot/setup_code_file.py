"""The setup code on the SD card: for a camera with no admin yet, `peercam-setup.txt`
on the boot partition holds the one-time code (auth/setup_code.py) its page asks
for, so that an owner without a screen or a shell reads it with any computer.

Written by `peercam firstboot`, which runs as root before every start of the daemon
(the daemon itself may not write the card); once an admin exists the file goes at
the next start."""

from __future__ import annotations

import logging
from pathlib import Path

from peercam.auth.setup_code import FILE_NAME, SetupCode, shown
from peercam.auth.store import open_store
from peercam.firstboot.first_boot import BOOT_DIRS, SERVICE_USER
from peercam.firstboot.system_root import SystemRoot
from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

SETUP_FILE_NAME = "peercam-setup.txt"
# What the Pi's firmware reads from its boot partition: a directory with one is it.
_FIRMWARE_FILES = ("config.txt", "cmdline.txt")


def boot_partition(root: SystemRoot, boot_file: Path | None) -> Path | None:
    """The card's boot partition: where peercam.txt is, else the first of the usual
    mount points that holds the firmware's files. None on a machine without one."""
    if boot_file is not None:
        return boot_file.parent
    for directory in BOOT_DIRS:
        path = root.at(directory)
        if any((path / name).is_file() for name in _FIRMWARE_FILES):
            return path
    return None


def _text(code: str, hostname: str) -> str:
    return (
        f"peercam setup code: {shown(code)}\n"
        "\n"
        f"Open https://{hostname}.local:8443/ (or the camera's address) in a browser,\n"
        "enter this code and choose the admin password. The code works once; this file\n"
        "is removed when the camera next starts after that.\n"
    )


def publish_setup_code(root: SystemRoot, state_dir: Path, boot_dir: Path | None) -> str | None:
    """Make sure a camera without an admin has a code and the card shows it; remove
    both once it has one. Returns the code shown, if any."""
    code_keeper = SetupCode(state_dir)
    card_file = boot_dir / SETUP_FILE_NAME if boot_dir is not None else None
    if open_store(state_dir).has_admin():
        code_keeper.consume()
        if card_file is not None and card_file.exists():
            card_file.unlink()
            logger.info("admin set: removed %s", card_file)
        return None
    code = code_keeper.ensure()
    # Written as root; the daemon runs as its own user and must read (and delete) it.
    root.give_to(SERVICE_USER, state_dir, state_dir / FILE_NAME)
    if card_file is not None:
        try:
            hostname = root.at("/etc/hostname").read_text().strip() or "peercam"
        except OSError:
            hostname = "peercam"
        text = _text(code, hostname)
        # Unchanged at most starts: the card's read-only partition is left alone then.
        if not card_file.is_file() or card_file.read_text(errors="replace") != text:
            write_private(card_file, text.encode())
            logger.info("no admin yet: the setup code is in %s", card_file)
    return code
