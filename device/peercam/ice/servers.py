"""The ICE servers of a session: the configured ones, plus TURN with credentials minted
for it (the TURN REST API scheme that coturn's `use-auth-secret` checks):

    username = "<expiry unix time>:<session id>"
    password = base64(HMAC-SHA1(shared secret, username))

aiortc takes one STUN and one TURN server; when several TURN URLs are configured the
daemon itself uses the first by transport, UDP then TCP then TLS, while the viewer
gets them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from peercam.config import IceServer, WebRtcConfig

logger = logging.getLogger(__name__)


def turn_rest_credentials(secret: str, session: str, ttl: int, now: float) -> tuple[str, str]:
    username = f"{int(now) + ttl}:{session}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _transport_rank(url: str) -> int:
    """UDP first (cheapest), then TCP (through UDP-hostile networks), then TLS."""
    if url.startswith("turns:"):
        return 2
    transport = parse_qs(urlsplit(url.replace("turn:", "turn://", 1)).query).get("transport")
    return 1 if transport and transport[0].lower() == "tcp" else 0


@dataclass(frozen=True)
class SessionIce:
    for_viewer: list[IceServer]  # everything, to advertise (Link headers)
    for_daemon: list[IceServer]  # what aiortc can take: one STUN, one TURN


def session_ice(config: WebRtcConfig, session: str, now: float | None = None) -> SessionIce:
    servers = list(config.ice_servers)
    if config.turn_rest is not None:
        rest = config.turn_rest
        username, password = turn_rest_credentials(
            rest.secret, session, rest.ttl, time.time() if now is None else now
        )
        servers.append(IceServer(urls=rest.urls, username=username, credential=password))
    stun = [(s, u) for s in servers for u in s.urls if u.startswith("stun:")]
    turn = sorted(
        ((s, u) for s in servers for u in s.urls if u.startswith(("turn:", "turns:"))),
        key=lambda pair: _transport_rank(pair[1]),
    )
    for_daemon = [IceServer(urls=[url], username=s.username, credential=s.credential)
                  for s, url in (stun[:1] + turn[:1])]  # fmt: skip
    return SessionIce(servers, for_daemon)


def describe_choice(config: WebRtcConfig) -> str:
    chosen = session_ice(config, "-").for_daemon
    if not chosen:
        return "no STUN/TURN server: host candidates only"
    return "daemon uses " + ", ".join(s.urls[0] for s in chosen)
