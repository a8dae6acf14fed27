"""Browser login sessions: an unguessable cookie value mapped to who logged in.

Kept in the state directory, so that a daemon restart (an update, a watchdog
restart) does not send every wall display back to the login page. Only a hash of
each cookie is stored, so the file does not hand out live cookies. A session also
ends when its user's password changes or the user is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass

from peercam.auth.principal import Principal
from peercam.auth.store import CredentialStore
from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

COOKIE = "peercam_session"
FILE_NAME = "login-sessions.json"


@dataclass(frozen=True)
class LoginSession:
    user: str
    password_hash: str  # the user's hash when they logged in
    expires: float  # epoch seconds: it must survive a restart


class LoginSessions:
    def __init__(self, store: CredentialStore, lifetime: float, max_sessions: int = 1000) -> None:
        self._store = store
        self.lifetime = lifetime
        self._max = max_sessions
        self._path = store.path.parent / FILE_NAME
        self._sessions: dict[str, LoginSession] = self._load()

    def __len__(self) -> int:
        return len(self._sessions)

    def _load(self) -> dict[str, LoginSession]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            sessions = {key: LoginSession(**fields) for key, fields in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as error:
            logger.warning("ignoring unreadable %s (%s): everyone logs in again", self._path, error)
            return {}
        now = time.time()
        return {key: s for key, s in sessions.items() if s.expires > now}

    def _save(self) -> None:
        data = {
            key: {"user": s.user, "password_hash": s.password_hash, "expires": s.expires}
            for key, s in self._sessions.items()
        }
        try:
            write_private(self._path, json.dumps(data).encode())
        except OSError as error:  # the login still works until the next restart
            logger.warning("cannot keep login sessions in %s: %s", self._path, error)

    def start(self, user_name: str) -> str:
        user = self._store.users[user_name]
        now = time.time()
        if len(self._sessions) >= self._max:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            while len(self._sessions) >= self._max:  # still full: the oldest goes
                del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].expires)]
        value = secrets.token_urlsafe(32)
        self._sessions[session_key(value)] = LoginSession(
            user.name, user.password_hash, now + self.lifetime
        )
        self._save()
        return value

    def lookup(self, value: str) -> Principal | None:
        key = session_key(value)
        session = self._sessions.get(key)
        if session is None:
            return None
        user = self._store.users.get(session.user)
        if (
            time.time() >= session.expires
            or user is None
            or user.password_hash != session.password_hash
        ):
            del self._sessions[key]
            self._save()
            return None
        return Principal(user.name, user.role, "cookie")

    def end(self, value: str) -> LoginSession | None:
        """Log out; the session that ended, if the cookie named one."""
        ended = self._sessions.pop(session_key(value), None)
        if ended is not None:
            self._save()
        return ended


def session_key(value: str) -> str:
    """What the file keeps of a cookie, and what others may keep to name a login."""
    return hashlib.sha256(value.encode()).hexdigest()
