"""The daemon's host candidates: on which addresses, on which ports, and under which
public address.

- A Pi often has more interfaces than viewers can reach (docker0, a VPN, usb0); every
  extra host candidate is one more pair for each viewer to check.
- Behind a router with a port forward, viewers outside can reach the camera only on
  the forwarded ports, at the router's public address.

aioice gathers on every address, on any port, and knows no public address; these are
one daemon's policy, not a per-connection choice, so its gathering is adjusted once,
for the whole process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
from collections.abc import Callable
from typing import Any

import aioice.ice
import ifaddr
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority

logger = logging.getLogger(__name__)

_original: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def addresses_of(interfaces: list[str]) -> set[str]:
    """The addresses of the named interfaces; entries that are addresses pass as they are."""
    wanted = set(interfaces)
    found = set(wanted)
    for adapter in ifaddr.get_adapters():
        if adapter.nice_name in wanted or adapter.name in wanted:
            found |= {ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips}
    return found


def restrict_host_candidates(interfaces: list[str]) -> None:
    """Offer host candidates only on `interfaces` (names such as "wlan0", or
    addresses); an empty list restores all of them."""
    if not interfaces:
        setattr(aioice.ice, "get_host_addresses", _original)  # noqa: B010
        return
    allowed = addresses_of(interfaces)

    def restricted(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in _original(use_ipv4, use_ipv6) if a in allowed]

    chosen = restricted(True, True)
    if not chosen:
        logger.warning("webrtc.interfaces %s have no usable address: no host candidates",
                       interfaces)  # fmt: skip
    else:
        logger.info("host candidates on %s", ", ".join(chosen))
    setattr(aioice.ice, "get_host_addresses", restricted)  # noqa: B010


_original_gathering = aioice.ice.Connection.get_component_candidates


async def _bind_in_range(connection: Any, address: str, first: int, last: int) -> Any:
    """A StunProtocol on `address` at a free port of first..last, or None."""
    loop = asyncio.get_running_loop()
    ports = list(range(first, last + 1))
    start = random.randrange(len(ports))  # spread sessions over the range
    for port in ports[start:] + ports[:start]:
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue  # in use: the next one
        return protocol
    return None


def use_port_range(first: int | None, last: int | None) -> None:
    """Bind host candidates within first..last (for a port forward); None: any port."""
    if first is None or last is None:
        setattr(aioice.ice.Connection, "get_component_candidates", _original_gathering)  # noqa: B010
        return

    # The signature of the aioice method it stands in for, timeout included.
    async def gather(
        self: Any,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109
    ) -> Any:
        host = []
        for address in addresses:
            protocol = await _bind_in_range(self, address, first, last)
            if protocol is None:
                logger.warning("no free UDP port in %d-%d on %s", first, last, address)
                continue
            bound_host, bound_port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", bound_host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=bound_host,
                port=bound_port,
                type="host",
            )
            host.append(protocol)
        self._protocols += host
        # Host sockets are ours; aioice still gathers the relay candidates (TURN).
        others = await _original_gathering(self, component, [], timeout)
        return [p.local_candidate for p in host] + others

    setattr(aioice.ice.Connection, "get_component_candidates", gather)  # noqa: B010
    logger.info("host candidates on UDP ports %d-%d", first, last)


_HOST_CANDIDATE = re.compile(
    r"^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) (\S+) (\d+) typ host(.*)$", re.MULTILINE
)


def advertise_public_address(sdp: str, public_ip: str | None) -> str:
    """Add, for each private host candidate, the same port at `public_ip` (slightly
    lower priority): what a viewer outside reaches through the router's port forward."""
    if not public_ip:
        return sdp

    def with_public(match: re.Match[str]) -> str:
        foundation, component, transport, priority, address, port, rest = match.groups()
        try:
            if not ipaddress.ip_address(address).is_private:
                return match.group(0)
        except ValueError:
            return match.group(0)
        public = (
            f"a=candidate:{foundation}p {component} {transport} {int(priority) - 1} "
            f"{public_ip} {port} typ host{rest}"
        )
        return match.group(0) + "\r\n" + public

    return _HOST_CANDIDATE.sub(with_public, sdp.replace("\r\n", "\n")).replace("\n", "\r\n")
