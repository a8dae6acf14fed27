"""Which of the daemon's addresses a viewer is told about.

A viewer signaling through the rendezvous is usually outside the home: the camera's
LAN addresses are of no use to it and are not the outside's business. For it the
answer keeps only candidates at public addresses: server-reflexive and relay ones,
and host ones that are public (a router's forwarded address advertised with
`public_ip`, a global IPv6 address). A kept candidate's related address (`raddr`,
the LAN base a server-reflexive candidate came from) is blanked as browsers do, and
`c=` names a kept address rather than the first host one. Connectivity checks still
go out from every local address; through the home's NAT they reach the viewer under
the public one.
"""

from __future__ import annotations

import ipaddress
import re

_CANDIDATE = re.compile(
    r"^(?P<head>a=candidate:\S+ \d+ \S+ \d+ )(?P<address>\S+)(?P<port> \d+ )"
    r"typ (?P<type>\S+)(?P<rest>.*)$"
)
_RELATED = re.compile(r" raddr \S+ rport \d+")
_CONNECTION = re.compile(r"^c=IN IP[46] \S+$")
PUBLIC_TYPES = frozenset({"srflx", "relay"})


def is_public(address: str) -> bool:
    """An address a viewer outside the home may be told: not private, loopback,
    link-local, unique-local, shared (carrier NAT) or an mDNS name."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False  # "<uuid>.local" and other names
    return parsed.is_global


def public_candidates_only(sdp: str) -> str:
    """`sdp` with only public candidates, their related addresses blanked, and every
    c= line naming the first address kept (0.0.0.0 when none is: the viewer then
    relies on its own candidates reaching the camera)."""
    kept: list[str] = []
    first_public: str | None = None
    for line in sdp.replace("\r\n", "\n").split("\n"):
        match = _CANDIDATE.match(line)
        if match is not None:
            # What a STUN or TURN server saw or gave is public by nature; a host
            # address only when it is.
            if match["type"] not in PUBLIC_TYPES and not is_public(match["address"]):
                continue
            first_public = first_public or match["address"]
            rest = _RELATED.sub(" raddr 0.0.0.0 rport 0", match["rest"])
            line = f"{match['head']}{match['address']}{match['port']}typ {match['type']}{rest}"
        kept.append(line)
    address = first_public or "0.0.0.0"
    family = "IP6" if ":" in address else "IP4"
    kept = [f"c=IN {family} {address}" if _CONNECTION.match(line) else line for line in kept]
    return "\r\n".join(kept)


def candidate_types(sdp: str) -> list[str]:
    """The `typ` of every candidate line, in order (for logs and tests)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    return [m["type"] for m in map(_CANDIDATE.match, lines) if m is not None]
