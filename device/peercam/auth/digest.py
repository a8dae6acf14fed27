"""HTTP Digest authentication (RFC 2617, and RFC 2069's older form without qop), as
NVRs still use it for RTSP: MD5, which is all FFmpeg, GStreamer, live555 and go2rtc
compute.

The store keeps HA1 = MD5(user:realm:password) beside a user's Argon2 hash (set with
the password) and a token's (set when it is made), since Digest cannot be checked
against a slow hash. HA1 is a password equivalent for Digest alone, and an MD5 that a
leaked file would let someone attack offline: a user's whose password is weak is
weak here too. It is kept whatever the config says; `rtsp.digest = false` stops
Digest being offered or accepted.

Nonces are stateless: a timestamp and an HMAC of it under a key made at start, so a
nonce older than NONCE_LIFETIME is answered `stale=true` (clients retry at once) and
a forged one is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

REALM = "peercam"
NONCE_LIFETIME = 300.0
_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def ha1(user: str, password: str) -> str:
    return md5(f"{user}:{REALM}:{password}")


@dataclass(frozen=True)
class DigestCredentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None


def parse(header_value: str) -> DigestCredentials | None:
    """The parameters of `Authorization: Digest ...` (without the scheme), or None."""
    fields = {
        m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _PARAM.finditer(header_value)
    }
    try:
        return DigestCredentials(
            username=fields["username"],
            realm=fields["realm"],
            nonce=fields["nonce"],
            uri=fields["uri"],
            response=fields["response"].lower(),
            qop=fields.get("qop"),
            nc=fields.get("nc"),
            cnonce=fields.get("cnonce"),
            opaque=fields.get("opaque"),
        )
    except KeyError:
        return None


class Nonces:
    def __init__(self, lifetime: float = NONCE_LIFETIME) -> None:
        self._key = secrets.token_bytes(32)
        self._lifetime = lifetime

    def make(self, now: float | None = None) -> str:
        stamp = f"{int(time.time() if now is None else now):x}"
        return f"{stamp}.{self._sign(stamp)}"

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, nonce: str, now: float | None = None) -> str:
        """ "ok", "stale" (ours, but old) or "forged"."""
        stamp, _, signature = nonce.partition(".")
        if not hmac.compare_digest(signature, self._sign(stamp)):
            return "forged"
        try:
            made = int(stamp, 16)
        except ValueError:
            return "forged"
        age = (time.time() if now is None else now) - made
        return "ok" if 0 <= age <= self._lifetime else "stale"


def challenge(nonce: str, stale: bool = False) -> str:
    # qop offered: FFmpeg then uses it; GStreamer, live555 and go2rtc answer without.
    return f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"' + (
        ", stale=true" if stale else ""
    )


def expected_response(credentials: DigestCredentials, stored_ha1: str, method: str) -> str:
    ha2 = md5(f"{method}:{credentials.uri}")
    if credentials.qop is None:
        return md5(f"{stored_ha1}:{credentials.nonce}:{ha2}")  # RFC 2069
    return md5(
        f"{stored_ha1}:{credentials.nonce}:{credentials.nc}:{credentials.cnonce}:"
        f"{credentials.qop}:{ha2}"
    )


def valid(credentials: DigestCredentials, stored_ha1: str, method: str) -> bool:
    if credentials.realm != REALM or credentials.qop not in (None, "auth"):
        return False
    if credentials.qop == "auth" and (not credentials.nc or not credentials.cnonce):
        return False
    return hmac.compare_digest(
        expected_response(credentials, stored_ha1, method), credentials.response
    )
