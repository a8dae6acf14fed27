"""The admin password from the boot partition: hashed into the credential store,
then removed from the card."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from peercam.auth.passwords import WeakPassword
from peercam.auth.store import CredentialStore
from peercam.firstboot.boot_config import parse_boot_config, remove_setting

logger = logging.getLogger(__name__)


def apply_boot_password(boot_file: Path, store: CredentialStore) -> str | None:
    """Set the admin password from `boot_file`'s `password = ...` line and blank that
    line. Returns a problem to show the user, or None (set, or nothing to set)."""
    try:
        config = parse_boot_config(boot_file.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot read {boot_file}: {error}"
    password = config.values.get("password")
    if not password:
        return None
    line = config.lines["password"]
    try:
        store.set_password("admin", password, "admin")
    except WeakPassword as error:
        # Left on the card, so the user can see the line the message names and fix it.
        return f"{boot_file} line {line}: password not used: {error}"
    today = datetime.date.today().isoformat()
    remove_setting(boot_file, "password", f"password = (set {today}; removed from this card)")
    logger.info("admin password set from %s and removed from it", boot_file)
    return None
