"""Which of the board's addresses the daemon offers as host candidates.

A Pi often has more interfaces than viewers can reach (docker0, a VPN, usb0); every
extra host candidate is one more pair for each viewer to check. aioice gathers on all
addresses and takes no list, so its one gathering function is wrapped, once, for the
whole daemon: it is one daemon's policy, not a per-connection choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aioice.ice
import ifaddr

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
