"""The admin password from the environment (containers, tests): PEERCAM_PASSWORD."""

from __future__ import annotations

import logging
import os

from peercam.auth.passwords import WeakPassword, verify_password
from peercam.auth.store import CredentialStore

logger = logging.getLogger(__name__)

VARIABLE = "PEERCAM_PASSWORD"


def apply_password_from_environment(store: CredentialStore) -> None:
    """Make PEERCAM_PASSWORD the admin's password (hashed), then drop it from the
    environment so no child process or crash report inherits it.

    Raises WeakPassword for a password too short to accept."""
    password = os.environ.pop(VARIABLE, None)
    if not password:
        return
    admin = store.users.get("admin")
    if admin is not None and verify_password(admin.password_hash, password):
        return  # already this password: keep the hash (and everyone's login sessions)
    try:
        store.set_password("admin", password, "admin")
    except WeakPassword as error:
        raise WeakPassword(f"{VARIABLE}: {error}") from None
    logger.info("admin password set from %s", VARIABLE)
