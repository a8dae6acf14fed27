"""The one-time setup code: what lets the first visitor of a camera with no admin yet
set the admin password from the browser, and nobody else on the network.

Whoever can read it has the camera in hand, or a shell on it: it is printed on the
console and in the journal, written to the SD card's boot partition (which a PC
reads) and shown by `peercam check`. It is kept in the state directory, private to
the service, so that it stays the same across restarts until used; using it deletes
it. Ten characters from 32 (50 bits), guessed at five tries a minute an address and
thirty a minute in all (the login throttle), is out of reach.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from peercam.service.private_file import write_private

FILE_NAME = "setup-code"
# No 0/O, 1/I/L: the code is read off a screen or a card and typed by hand.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 10


def _normalised(text: str) -> str:
    """As typed: any case, with or without the dash or spaces."""
    return "".join(c for c in text.upper() if c != "-" and not c.isspace())


def shown(code: str) -> str:
    """XXXXX-XXXXX: easier to read out and to type."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


class SetupCode:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def current(self) -> str | None:
        """The code waiting to be used, None when there is none (or it is unreadable:
        a code nobody can read is one nobody can be told)."""
        try:
            code = _normalised(self.path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError):
            return None
        return code if len(code) == LENGTH and set(code) <= set(ALPHABET) else None

    def ensure(self) -> str:
        """The waiting code, made first if there is none."""
        code = self.current()
        if code is None:
            code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
            write_private(self.path, f"{code}\n".encode())
        return code

    def matches(self, presented: str) -> bool:
        code = self.current()
        if code is None:
            return False
        return hmac.compare_digest(_normalised(presented).encode(), code.encode())

    def consume(self) -> None:
        """Used: no one may use it again."""
        self.path.unlink(missing_ok=True)
