"""Challenge-response login as NVRs do it, over the HTTP interface's accounts: Digest
(auth/digest.py; a user, or a token by its name with its secret as the password) and
Basic (a user's password, or a token's secret as the password of any name, since NVRs
have no field for a Bearer token). RTSP and the ONVIF port's plain-HTTP snapshot share
it; the viewer role is enough for both.

A request with no credentials gets the challenges without counting as a failure:
clients always try without first."""

from __future__ import annotations

import base64
import binascii

from peercam.auth import digest
from peercam.auth.authenticator import Authenticator
from peercam.auth.principal import Principal
from peercam.auth.store import SECRET_PREFIX


class StaleNonce(Exception):
    """A Digest nonce of ours that is too old: the client should retry at once."""


class ChallengeLogin:
    def __init__(self, accounts: Authenticator, offer_digest: bool) -> None:
        self._accounts = accounts
        self._offer_digest = offer_digest
        self._nonces = digest.Nonces()

    def challenges(self, stale: bool = False) -> list[str]:
        basic = f'Basic realm="{digest.REALM}"'
        if not self._offer_digest:
            return [basic]
        return [digest.challenge(self._nonces.make(), stale), basic]

    async def viewer(self, authorization: str, method: str, client: str) -> Principal | None:
        """Who `authorization` proves to be, if they may watch; None otherwise.
        Raises LoginThrottled (too many failures) and StaleNonce."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "digest" and self._offer_digest:
            return self._digest(credentials, method, client)
        if scheme.lower() == "basic":
            decoded = _basic(credentials.strip())
            if decoded is not None and decoded[1].startswith(SECRET_PREFIX):
                authorization = f"Bearer {decoded[1]}"
        principal = await self._accounts.identify(None, authorization, client)
        return principal if principal is not None and principal.may("viewer") else None

    def _digest(self, header: str, method: str, client: str) -> Principal | None:
        accounts = self._accounts
        accounts.check_client(client)
        credentials = digest.parse(header)
        if credentials is None:
            accounts.record_failure(client, "a malformed Digest credential")
            return None
        state = self._nonces.check(credentials.nonce)
        if state == "stale":
            raise StaleNonce()
        found = accounts.digest_secret(credentials.username)
        if found is None or found[0].proof != "bearer":
            accounts.check_attempt(client)  # a password: held back while many are guessed
        if state != "ok" or found is None or not digest.valid(credentials, found[1], method):
            accounts.record_failure(client, f"Digest for {credentials.username[:64]!r}")
            return None
        principal = found[0]
        return principal if principal.may("viewer") else None


def _basic(credentials: str) -> tuple[str, str] | None:
    try:
        user, colon, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None
