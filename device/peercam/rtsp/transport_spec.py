"""The Transport header of a SETUP (RFC 2326 §12.39): which of the client's offers
peercam can serve, and what the reply says."""

from __future__ import annotations

import re
from dataclasses import dataclass

from peercam.rtsp.request import RtspError

_RANGE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


@dataclass(frozen=True)
class TransportSpec:
    tcp: bool
    # TCP: the interleaved channels (RTP, RTCP); UDP: the client's ports.
    first: int
    second: int

    def reply(self, server_ports: tuple[int, int] | None, ssrc: int) -> str:
        if self.tcp:
            return f"RTP/AVP/TCP;unicast;interleaved={self.first}-{self.second};ssrc={ssrc:08X}"
        assert server_ports is not None
        return (
            f"RTP/AVP;unicast;client_port={self.first}-{self.second};"
            f"server_port={server_ports[0]}-{server_ports[1]};ssrc={ssrc:08X}"
        )


def choose_transport(header: str, default_channel: int) -> TransportSpec:
    """The first offer peercam serves: unicast RTP/AVP over UDP or TCP interleaved.
    RtspError 461 when there is none (the client then offers another)."""
    if not header:
        raise RtspError(461, "SETUP needs a Transport header")
    for offer in header.split(","):
        parts = [p.strip() for p in offer.split(";")]
        profile = parts[0].upper()
        if profile not in ("RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP"):
            continue
        fields: dict[str, str] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            fields[key.lower()] = value
        if "multicast" in fields:
            continue
        if profile == "RTP/AVP/TCP":
            channels = _pair(fields.get("interleaved"), default_channel)
            if channels is not None and max(channels) <= 255:
                return TransportSpec(True, *channels)
        else:
            ports = _pair(fields.get("client_port"), None)
            if ports is not None and 0 < min(ports) and max(ports) <= 65535:
                return TransportSpec(False, *ports)
    raise RtspError(461, "only unicast RTP/AVP over UDP (client_port) or TCP (interleaved)")


def _pair(value: str | None, default_first: int | None) -> tuple[int, int] | None:
    if value is None:
        return None if default_first is None else (default_first, default_first + 1)
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    first = int(match[1])
    return first, int(match[2]) if match[2] else first + 1
