"""WS-Security UsernameToken (OASIS UsernameToken Profile 1.0), the login ONVIF
clients send in the SOAP header.

PasswordDigest = Base64(SHA-1(nonce + created + password)) needs the password itself,
which the store keeps only for viewer tokens (auth/store.py): a user's password is an
Argon2 hash here and can be checked only when sent as PasswordText. Home Assistant
and most NVRs send the digest, so an NVR is given a viewer token; a user name with a
digest is refused with a log line that says so.

A digest is accepted within FRESHNESS of our clock and its nonce once: a captured
request cannot be replayed. Clients whose clocks differ read ours first
(GetSystemDateAndTime, allowed without login) and adjust, as the spec intends."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from peercam.auth.authenticator import Authenticator
from peercam.auth.principal import Principal
from peercam.auth.store import SECRET_PREFIX
from peercam.onvif.soap import WSSE, WSU

logger = logging.getLogger(__name__)

FRESHNESS = 600.0  # seconds either side of our clock
MAX_NONCES = 4096  # remembered while fresh; more would need a flood of valid logins
DIGEST_TYPE = "#PasswordDigest"


@dataclass(frozen=True)
class UsernameToken:
    username: str
    password: str
    digest: bool
    nonce: bytes
    created: str


def read_token(security: Element | None) -> UsernameToken | None:
    if security is None:
        return None
    token = security.find(f"{{{WSSE}}}UsernameToken")
    if token is None:
        return None
    username = token.findtext(f"{{{WSSE}}}Username", "").strip()
    password_node = token.find(f"{{{WSSE}}}Password")
    password = (password_node.text or "").strip() if password_node is not None else ""
    kind = password_node.get("Type", "") if password_node is not None else ""
    try:
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce", "").strip(), validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    created = token.findtext(f"{{{WSU}}}Created", "").strip()
    return UsernameToken(username, password, kind.endswith(DIGEST_TYPE), nonce, created)


def password_digest(nonce: bytes, created: str, password: str) -> str:
    hashed = hashlib.sha1(nonce + created.encode() + password.encode(), usedforsecurity=False)
    return base64.b64encode(hashed.digest()).decode()


class TokenChecker:
    def __init__(self, accounts: Authenticator) -> None:
        self._accounts = accounts
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._told: set[str] = set()

    async def principal(self, token: UsernameToken, client: str) -> Principal | None:
        """Who the token proves to be, or None (a failure counted for throttling).
        Raises LoginThrottled."""
        accounts = self._accounts
        accounts.check_client(client)
        if not token.digest:
            return await self._plain(token, client)
        refusal = self._refusal(token)
        if refusal is None:
            found = accounts.readable_token_secret(token.username)
            expected = password_digest(token.nonce, token.created, found[1]) if found else ""
            if found is not None and hmac.compare_digest(
                expected.encode(), token.password.encode()
            ):
                self._remember(token.nonce)
                return found[0]
            refusal = f"a wrong UsernameToken digest for {token.username[:64]!r}"
            if found is None and token.username in accounts.store.users:
                refusal = self._explain_users(token.username)
            elif found is None and any(
                t.name == token.username for t in accounts.store.tokens.values()
            ):
                refusal += " (only viewer tokens made since ONVIF came can log in by digest)"
        accounts.record_failure(client, refusal)
        return None

    async def _plain(self, token: UsernameToken, client: str) -> Principal | None:
        """A password sent as it is, over plain HTTP: taken for the viewer role only,
        so that the admin's password is not sent around the network in clear."""
        if token.password.startswith(SECRET_PREFIX):
            principal = await self._accounts.identify(None, f"Bearer {token.password}", client)
        else:
            principal = await self._accounts.check_password(
                token.username, token.password, client, "basic"
            )
        if principal is not None and principal.may("admin"):
            if principal.name not in self._told:
                self._told.add(principal.name)
                logger.warning(
                    "ONVIF: refused %r: an admin's password or token sent in clear over "
                    "plain HTTP; give the NVR a viewer token (`peercam token create NAME "
                    "--role viewer`)",
                    principal.name,
                )
            return None
        return principal

    def _refusal(self, token: UsernameToken) -> str | None:
        try:
            created = datetime.datetime.fromisoformat(token.created.replace("Z", "+00:00"))
        except ValueError:
            return "a UsernameToken without a valid Created time"
        if created.tzinfo is None:
            created = created.replace(tzinfo=datetime.UTC)
        skew = created.timestamp() - time.time()
        if abs(skew) > FRESHNESS:
            return f"a UsernameToken {skew:+.0f} s from our clock (the client should read ours)"
        if len(token.nonce) < 8:
            return "a UsernameToken digest without a nonce"
        self._forget_stale()
        if token.nonce in self._seen:
            return "a replayed UsernameToken"
        return None

    def _remember(self, nonce: bytes) -> None:
        self._seen[nonce] = time.monotonic()
        while len(self._seen) > MAX_NONCES:
            self._seen.popitem(last=False)

    def _forget_stale(self) -> None:
        limit = time.monotonic() - 2 * FRESHNESS
        while self._seen and next(iter(self._seen.values())) < limit:
            self._seen.popitem(last=False)

    def _explain_users(self, name: str) -> str:
        if name not in self._told:
            self._told.add(name)
            logger.warning(
                "ONVIF: %r logged in with a password digest, which a user's password "
                "(kept only as a hash) cannot be checked against: give the NVR a viewer "
                "token (`peercam token create NAME --role viewer`) and enter the token's "
                "name and secret as its user and password",
                name[:64],
            )
        return f"a password digest for user {name[:64]!r} (users need PasswordText)"
