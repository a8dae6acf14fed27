"""Turns what a request presents (login cookie, Bearer token, Basic password) into a
Principal, and limits how fast one client may guess."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from peercam.auth.local_check import PRINCIPAL as LOCAL_CHECK
from peercam.auth.local_check import LocalCheckKey
from peercam.auth.login_sessions import LoginSessions, session_key
from peercam.auth.passwords import hash_password, verify_password
from peercam.auth.principal import Principal, Proof, Role
from peercam.auth.store import CredentialError, CredentialStore
from peercam.rate_window import RateWindow

logger = logging.getLogger(__name__)

# Basic sends the password with every request; an NVR polling once a second would
# otherwise cost an Argon2 verification (~0.1 s of CPU, 64 MiB) per request.
_BASIC_CACHE_SECONDS = 300.0


class LoginThrottled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


_EVERYONE = "*"
TOKEN_PREFIX = "token:"  # how a token's principal is named


@dataclass(frozen=True)
class AccountChange:
    """A login ended by logging out (`session`: its key, as login_sessions.session_key
    makes it), or `user`'s password changed or the user was removed (`session` None).
    What was granted to that login or user (push subscriptions) ends with it."""

    user: str
    session: str | None = None


AccountListener = Callable[[AccountChange], None]


class Authenticator:
    def __init__(
        self,
        store: CredentialStore,
        session_lifetime: float,
        failures_per_minute: int,
        failures_per_minute_total: int = 30,
        local_check: LocalCheckKey | None = None,
    ) -> None:
        self.store = store
        self._local_check = local_check
        self.sessions = LoginSessions(store, session_lifetime)
        self._failures = RateWindow(60.0)
        self._failures_per_minute = failures_per_minute
        # Every address's failures together, under one key.
        self._all_failures = RateWindow(60.0)
        self._failures_per_minute_total = failures_per_minute_total
        self._basic_ok: dict[str, tuple[Principal, str, float]] = {}
        # Verified against when the user does not exist, so that a wrong user name
        # takes as long as a wrong password and names cannot be probed by timing.
        # Made on first need: a hash costs start-up time a camera need not spend.
        self._decoy_hash: str | None = None
        self._store_error: str | None = None
        # Each verification holds 64 MiB for ~0.1 s (more on a Pi): one at a time, so
        # a burst of guesses cannot run a small board out of memory.
        self._verifying = asyncio.Semaphore(1)
        # Told of each logout and each changed or removed account; the command line
        # changes the file, so a change is seen when the file is read again.
        self.listeners: list[AccountListener] = []
        self._hashes = self._password_hashes()

    def _password_hashes(self) -> dict[str, str]:
        return {name: user.password_hash for name, user in self.store.users.items()}

    def password_hash(self, user: str) -> str | None:
        """The user's current hash, None for no such user (after a refresh)."""
        self.refresh()
        found = self.store.users.get(user)
        return found.password_hash if found else None

    def refresh(self) -> None:
        try:
            self.store.refresh()
            self._store_error = None
        except CredentialError as error:
            # Keep the users we had; say so once, not on every request.
            if str(error) != self._store_error:
                logger.error("%s; keeping the credentials read before", error)
                self._store_error = str(error)
        hashes = self._password_hashes()
        if hashes != self._hashes:
            changed = [name for name, old in self._hashes.items() if hashes.get(name) != old]
            self._hashes = hashes
            for name in changed:
                self._tell(AccountChange(name))

    def logout(self, cookie: str) -> None:
        ended = self.sessions.end(cookie)
        if ended is not None:
            self._tell(AccountChange(ended.user, session_key(cookie)))

    def _tell(self, change: AccountChange) -> None:
        for listener in list(self.listeners):
            try:
                listener(change)
            except Exception:
                # One listener's fault must not cost the others their news, nor the
                # request its answer.
                logger.exception("account listener failed on %s", change)

    def role_of(self, name: str) -> Role | None:
        """The role `name` (a user, or "token:<name>" as principals name tokens) has
        now; None when the account is gone (or every token of that name expired)."""
        self.refresh()
        if name == LOCAL_CHECK:
            return "viewer" if self._local_check is not None else None
        if name.startswith(TOKEN_PREFIX):
            wanted, now = name[len(TOKEN_PREFIX) :], time.time()
            roles = {t.role for t in self.store.tokens.values()
                     if t.name == wanted and not t.expired(now)}  # fmt: skip
            # Two live tokens of one name with different roles: the lesser one.
            return None if not roles else "admin" if roles == {"admin"} else "viewer"
        user = self.store.users.get(name)
        return user.role if user is not None else None

    def digest_secret(self, name: str) -> tuple[Principal, str] | None:
        """Who `name` is and the HA1 Digest checks against (auth/digest.py): a user's,
        or a live token's by its name; None when there is none to check."""
        self.refresh()
        user = self.store.users.get(name)
        if user is not None:
            return (
                (Principal(user.name, user.role, "basic"), user.digest_ha1)
                if user.digest_ha1
                else None
            )
        now = time.time()
        for token in self.store.tokens.values():
            if token.name == name and token.digest_ha1 and not token.expired(now):
                return Principal(TOKEN_PREFIX + token.name, token.role, "bearer"), token.digest_ha1
        return None

    def readable_token_secret(self, name: str) -> tuple[Principal, str] | None:
        """A live token's principal and secret by the token's name, where the store
        keeps the secret (viewer tokens: auth/store.py says why)."""
        self.refresh()
        now = time.time()
        for token in self.store.tokens.values():
            if token.name == name and token.readable_secret and not token.expired(now):
                principal = Principal(TOKEN_PREFIX + token.name, token.role, "bearer")
                return principal, token.readable_secret
        return None

    def check_attempt(self, client: str) -> None:
        """Raise LoginThrottled when `client` (or everyone) has failed too often."""
        self._raise_if_throttled(client)
        self._raise_if_guessing_everywhere()

    def check_client(self, client: str) -> None:
        """Raise LoginThrottled when `client` has failed too often: what a token's
        login is held to (everyone's failures are about guessable passwords)."""
        self._raise_if_throttled(client)

    def record_failure(self, client: str, what: str) -> None:
        """A credential that did not prove anything, checked elsewhere (Digest)."""
        self._failed(client, what)

    def setup_needed(self) -> bool:
        self.refresh()
        return not self.store.has_admin()

    async def identify(
        self, cookie: str | None, authorization: str | None, client: str
    ) -> Principal | None:
        """The principal a request proves, or None. Raises LoginThrottled."""
        self.refresh()
        if authorization:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                return self._bearer(credentials.strip(), client)
            if scheme.lower() == "basic":
                decoded = _decode_basic(credentials.strip())
                if decoded is None:
                    self._raise_if_throttled(client)
                    self._failed(client, "a malformed Basic credential")
                    return None
                return await self.check_password(*decoded, client, "basic")
            return None
        if cookie:
            return self.sessions.lookup(cookie)
        return None

    def _bearer(self, presented: str, client: str) -> Principal | None:
        self._raise_if_throttled(client)
        if self._local_check is not None and self._local_check.matches(presented, client):
            return Principal(LOCAL_CHECK, "viewer", "bearer")
        token = self.store.token_for(presented)
        if token is None:
            self._failed(client, "a bad or expired token")
            return None
        return Principal(TOKEN_PREFIX + token.name, token.role, "bearer")

    def _raise_if_throttled(self, client: str) -> None:
        if self._failures.count(client) >= self._failures_per_minute:
            raise LoginThrottled(max(1.0, self._failures.retry_after(client)))

    def _raise_if_guessing_everywhere(self) -> None:
        # Passwords only: they can be guessed; a token (256 random bits) cannot, so a
        # valid one keeps working for the NVR while someone guesses elsewhere.
        if self._all_failures.count(_EVERYONE) >= self._failures_per_minute_total:
            raise LoginThrottled(max(1.0, self._all_failures.retry_after(_EVERYONE)))

    def _failed(self, client: str, what: str) -> None:
        self._failures.add(client)
        self._all_failures.add(_EVERYONE)
        logger.warning(
            "refused %s from %s (%d failures in the last minute)",
            what,
            client or "?",
            self._failures.count(client),
        )

    async def check_password(
        self, name: str, password: str, client: str, proof: Proof = "cookie"
    ) -> Principal | None:
        self._raise_if_throttled(client)
        self._raise_if_guessing_everywhere()
        user = self.store.users.get(name)
        cache_key = hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
        cached = self._basic_ok.get(cache_key)
        if (
            cached is not None
            and user is not None
            and cached[1] == user.password_hash
            and cached[2] > time.monotonic()
        ):
            return cached[0]
        async with self._verifying:
            # Guesses that queued up behind others are counted before they cost more.
            self._raise_if_throttled(client)
            self._raise_if_guessing_everywhere()
            if user is not None:
                stored = user.password_hash
            else:
                if self._decoy_hash is None:
                    self._decoy_hash = await asyncio.to_thread(hash_password, "peercam-decoy")
                stored = self._decoy_hash
            # Argon2 is deliberately slow: off the event loop.
            ok = await asyncio.to_thread(verify_password, stored, password)
        if not ok or user is None:
            # A name no user has is often a password typed into the wrong field.
            self._failed(
                client, f"password for user {name!r}" if user else "password for an unknown user"
            )
            return None
        principal = Principal(user.name, user.role, proof)
        if proof == "basic":
            if len(self._basic_ok) > 100:
                self._basic_ok.clear()
            self._basic_ok[cache_key] = (
                principal,
                user.password_hash,
                time.monotonic() + _BASIC_CACHE_SECONDS,
            )
        return principal


def _decode_basic(credentials: str) -> tuple[str, str] | None:
    """(user, password), or None for anything else: without the colon, the whole of
    it may be the password."""
    try:
        text = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    name, colon, password = text.partition(":")
    return (name, password) if colon else None
