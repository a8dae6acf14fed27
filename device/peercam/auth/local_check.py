"""The key a process on the camera itself uses to watch like a viewer: the updater's
self-check makes a real WHEP offer to the daemon it has just started, and has no
password to log in with (the admin's is a hash; a token would have to be written into
the daemon's credentials by root).

The daemon makes a new key at every start, in a file only its user (and root) can
read, and honours it only from a loopback address."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from pathlib import Path

from peercam.service.private_file import write_private

KEY_FILE = "self-check.key"
PRINCIPAL = "local:self-check"


class LocalCheckKey:
    def __init__(self, state_dir: Path, own_address: str = "") -> None:
        self._path = state_dir / KEY_FILE
        self._key: str | None = None
        # A daemon told to listen on one address only is checked on that address.
        self._own = "" if own_address in ("", "0.0.0.0", "::") else own_address

    def renew(self) -> None:
        """A fresh key (blocking: call from a thread)."""
        key = secrets.token_urlsafe(32)
        write_private(self._path, key.encode())
        self._key = key

    def matches(self, presented: str, client: str) -> bool:
        if self._key is None or not (_is_loopback(client) or (self._own and client == self._own)):
            return False
        return hmac.compare_digest(presented.encode(), self._key.encode())


def read_local_check_key(state_dir: Path) -> str:
    """The running daemon's key (raises OSError when there is none yet). Root reads it
    from a directory the service user owns: never through a link, never much."""
    fd = os.open(state_dir / KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{state_dir / KEY_FILE} is not a regular file")
        return file.read(128).decode("ascii", errors="replace").strip()


def _is_loopback(client: str) -> bool:
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return False
    # A dual-stack socket ("::") sees 127.0.0.1 as ::ffff:127.0.0.1.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
