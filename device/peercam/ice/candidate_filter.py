"""Which of the daemon's candidates a viewer is told about.

A viewer signaling through the rendezvous is usually outside the home: the camera's
LAN addresses are of no use to it and are not the outside's business. For it the
answer keeps only server-reflexive and relay candidates (and says so in `c=`, which
otherwise names the first host address). Connectivity checks still go out from every
local address; through the home's NAT they reach the viewer under the public one.
"""

from __future__ import annotations

import re

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)")
_CONNECTION = re.compile(r"^c=IN IP[46] \S+$")
PUBLIC_TYPES = frozenset({"srflx", "relay"})


def public_candidates_only(sdp: str) -> str:
    """`sdp` without host (and peer-reflexive) candidates; every c= line names the
    first address kept, or 0.0.0.0 when none is (the viewer then relies on its own
    candidates reaching the camera)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    first_public: str | None = None
    for line in lines:
        match = _CANDIDATE.match(line)
        if match is not None:
            if match.group(2) not in PUBLIC_TYPES:
                continue
            first_public = first_public or match.group(1)
        kept.append(line)
    address = first_public or "0.0.0.0"
    family = "IP6" if ":" in address else "IP4"
    kept = [f"c=IN {family} {address}" if _CONNECTION.match(line) else line for line in kept]
    return "\r\n".join(kept)


def candidate_types(sdp: str) -> list[str]:
    """The `typ` of every candidate line, in order (for logs and tests)."""
    return [m.group(2) for m in map(_CANDIDATE.match, sdp.replace("\r\n", "\n").split("\n")) if m]
