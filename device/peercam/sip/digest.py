"""SIP digest authentication, the client's side (RFC 3261 §22, RFC 7616's digest
with RFC 8760's algorithms for SIP): read a 401/407 challenge, answer it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from peercam.sip.message import Response, SipError, quote, unquote

# RFC 8760 §2: what SIP may use; MD5 stays for the PBXs that offer nothing else.
_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # as named, "-sess" included
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, text: str) -> Challenge:
        scheme, _, rest = text.strip().partition(" ")
        if scheme.lower() != "digest":
            raise SipError(f"authentication scheme {scheme[:20]!r}")
        params = parse_auth_params(rest)
        if "realm" not in params or "nonce" not in params:
            raise SipError("digest challenge without realm or nonce")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm.removesuffix("-SESS") not in _HASHES:
            raise SipError(f"digest algorithm {algorithm[:20]!r}")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(
            params["realm"], params["nonce"], algorithm, qop, params.get("opaque"),
            params.get("stale", "").lower() == "true",
        )  # fmt: skip

    @property
    def usable(self) -> bool:
        """peercam answers qop=auth or no qop (auth-int, body hashing, it does not)."""
        return not self.qop or "auth" in self.qop


def parse_auth_params(text: str) -> dict[str, str]:
    """`name=value, name="quoted, value"` → {name: value} (names lower-cased)."""
    params: dict[str, str] = {}
    index, length = 0, len(text)
    while index < length:
        while index < length and text[index] in " \t,":
            index += 1
        if index >= length:
            break
        equals = text.find("=", index)
        if equals < 0:
            raise SipError(f"auth parameter without a value: {text[index : index + 40]!r}")
        name = text[index:equals].strip().lower()
        index = equals + 1
        while index < length and text[index] in " \t":
            index += 1
        if index < length and text[index] == '"':
            end = index + 1
            while end < length and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if end >= length:
                raise SipError("unterminated quoted auth parameter")
            value = unquote(text[index : end + 1])
            index = end + 1
        else:
            end = text.find(",", index)
            end = length if end < 0 else end
            value = text[index:end].strip()
            index = end
        params[name] = value
    return params


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(_HASHES[algorithm.removesuffix("-SESS")], text.encode()).hexdigest()


def response(
    challenge: Challenge, username: str, password: str, method: str, uri: str,
    cnonce: str, nc: int,
) -> str:  # fmt: skip
    """The `response` value (RFC 7616 §3.4.1)."""
    algorithm = challenge.algorithm
    ha1 = _hash(algorithm, f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if challenge.qop:
        return _hash(algorithm, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")


def authorization(
    challenge: Challenge, username: str, password: str, method: str, uri: str,
    nc: int = 1, cnonce: str | None = None,
) -> str:  # fmt: skip
    """The Authorization (or Proxy-Authorization) value answering `challenge`."""
    if not challenge.usable:
        raise SipError(f"digest qop {','.join(challenge.qop)} is not supported")
    cnonce = cnonce or secrets.token_hex(8)
    digest = response(challenge, username, password, method, uri, cnonce, nc)
    parts = [
        f"username={quote(username)}", f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}", f"response={quote(digest)}",
        f"algorithm={challenge.algorithm}",
    ]  # fmt: skip
    if challenge.qop:
        parts += [f"cnonce={quote(cnonce)}", "qop=auth", f"nc={nc:08x}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def challenge_in(response: Response) -> Challenge:
    """The challenge of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) that
    peercam can answer: servers may offer several in their order of preference (RFC
    8760 §2.4, e.g. SHA-256 then MD5), and the first usable one is taken."""
    header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    offered = response.headers.get_all(header)
    if not offered:
        raise SipError(f"{response.status} without a {header} header")
    problems = []
    for text in offered:
        try:
            challenge = Challenge.parse(text)
        except SipError as error:
            problems.append(str(error))
            continue
        if challenge.usable:
            return challenge
        problems.append(f"digest qop {','.join(challenge.qop)} is not supported")
    raise SipError("; ".join(problems))


def answer(
    response: Response, challenge: Challenge, username: str, password: str, method: str,
    uri: str,
) -> tuple[str, str]:  # fmt: skip
    """The header answering `response`'s `challenge`: (Authorization or
    Proxy-Authorization, its value)."""
    name = "Authorization" if response.status == 401 else "Proxy-Authorization"
    return name, authorization(challenge, username, password, method, uri)
