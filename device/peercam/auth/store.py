"""Users and API tokens, kept in one JSON file in the state directory.

Passwords are stored only as Argon2 hashes. Tokens are 256-bit random strings, so a
single SHA-256 is enough to keep them unusable if the file leaks, and it is cheap
enough to check on every request. The file is private to the service user and is
replaced atomically, so a power cut leaves the old or the new version, never half.
The running daemon and the `peercam passwd` / `peercam token` commands share it:
the daemon notices changes by the file's stat and reloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peercam.auth import digest
from peercam.auth.passwords import hash_password
from peercam.auth.principal import ROLES, Role
from peercam.service.private_file import write_private

FILE_NAME = "credentials.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SECRET_PREFIX = "pct_"  # every token starts so: told apart from a password
_TOKEN = re.compile(rf"^{SECRET_PREFIX}([0-9a-f]{{12}})_([A-Za-z0-9_-]{{20,100}})$")


class CredentialError(ValueError):
    """A bad name, role, or an unreadable credentials file; one line for the user."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str
    # For Digest (auth/digest.py): set with the password; None for one set before.
    digest_ha1: str | None = None


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    role: Role
    sha256: str
    created: float
    expires: float | None  # epoch seconds; None never
    digest_ha1: str | None = None  # the token's name and secret, for Digest
    # A viewer token's secret itself, for ONVIF's WS-UsernameToken digest, which
    # hashes the password with the request's nonce and cannot be checked any other
    # way. Only viewer tokens keep it: they are what an NVR is given, and one read
    # from a leaked file lets its finder watch, not administer.
    readable_secret: str | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise CredentialError(
            f"bad name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise CredentialError(f"bad role {role!r}: one of {', '.join(ROLES)}")
    return role


class CredentialStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self._seen: tuple[int, int, int] | None = None
        self.refresh()

    # -- reading -------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        """Reload if the file changed since it was last read (cheap: one stat)."""
        seen = self._stat()
        if seen == self._seen:
            return
        self._seen = seen
        if seen is None:
            self.users, self.tokens = {}, {}
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = {
                name: User(name, _check_role(u["role"]), str(u["hash"]), u.get("ha1"))
                for name, u in data.get("users", {}).items()
            }
            tokens = {
                tid: Token(
                    str(t["id"]),
                    str(t["name"]),
                    _check_role(t["role"]),
                    str(t["sha256"]),
                    float(t["created"]),
                    None if t.get("expires") is None else float(t["expires"]),
                    t.get("digest_ha1"),
                    t.get("readable_secret"),
                )
                for tid, t in data.get("tokens", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CredentialError(f"cannot read {self.path}: {error}") from None
        self.users, self.tokens = users, tokens

    def has_admin(self) -> bool:
        return any(u.role == "admin" for u in self.users.values())

    def token_for(self, presented: str, now: float | None = None) -> Token | None:
        match = _TOKEN.match(presented)
        if not match:
            return None
        token = self.tokens.get(match[1])
        if token is None or token.expired(time.time() if now is None else now):
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        return token if hmac.compare_digest(digest, token.sha256) else None

    # -- changing ------------------------------------------------------------------

    def set_password(self, name: str, password: str, role: str | None = None) -> User:
        return self.put_user(self.new_user(name, password, role))

    def new_user(self, name: str, password: str, role: str | None = None) -> User:
        """`name` with this password (hashed: slow, so callable from another thread:
        it changes nothing), keeping its role unless `role` says otherwise."""
        _check_name(name)
        current = self.users.get(name)
        chosen = _check_role(role or (current.role if current else "admin"))
        return User(name, chosen, hash_password(password), digest.ha1(name, password))

    def put_user(self, user: User) -> User:
        """Add or replace `user`, and save."""
        self.users[user.name] = user
        self._save()
        return user

    def set_role(self, name: str, role: str) -> User:
        current = self.users.get(name)
        if current is None:
            raise CredentialError(f"no user {name!r}")
        user = User(name, _check_role(role), current.password_hash, current.digest_ha1)
        self.users[name] = user
        self._save()
        return user

    def remove_user(self, name: str) -> None:
        if self.users.pop(name, None) is None:
            raise CredentialError(f"no user {name!r}")
        self._save()

    def create_token(self, name: str, role: str, lifetime_days: float | None) -> str:
        """Make a token and return it; only its hash is kept, so it is shown once."""
        _check_name(name)
        if any(t.name == name for t in self.tokens.values()):
            raise CredentialError(f"a token named {name!r} exists; revoke it first")
        token_id = secrets.token_hex(6)
        presented = f"{SECRET_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        self.tokens[token_id] = Token(
            token_id,
            name,
            _check_role(role),
            hashlib.sha256(presented.encode()).hexdigest(),
            now,
            None if lifetime_days is None else now + lifetime_days * 86400,
            digest.ha1(name, presented),
            presented if role == "viewer" else None,
        )
        self._save()
        return presented

    def revoke_token_id(self, token_id: str) -> Token:
        token = self.tokens.pop(token_id, None)
        if token is None:
            raise CredentialError(f"no token {token_id!r}")
        self._save()
        return token

    def revoke_token(self, name_or_id: str) -> Token:
        for token in self.tokens.values():
            if name_or_id in (token.name, token.id):
                del self.tokens[token.id]
                self._save()
                return token
        raise CredentialError(f"no token named {name_or_id!r}")

    def _save(self) -> None:
        users = {
            u.name: {"role": u.role, "hash": u.password_hash}
            | ({"ha1": u.digest_ha1} if u.digest_ha1 else {})
            for u in self.users.values()
        }
        tokens = {t.id: asdict(t) for t in self.tokens.values()}
        data: dict[str, Any] = {"version": 1, "users": users, "tokens": tokens}
        write_private(self.path, json.dumps(data, indent=1).encode())
        self._seen = self._stat()


def open_store(directory: Path) -> CredentialStore:
    """The credential store in `directory`, made (private) if it is new: the one way
    the daemon, the command line and first boot open it. Raises CredentialError."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return CredentialStore(directory)
    except OSError as error:
        raise CredentialError(f"state directory {directory}: {error.strerror or error}") from None
