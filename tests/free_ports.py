"""A TCP port for a server a test starts (mosquitto, a fake daemon, a port left
closed): one the kernel will not hand out meanwhile.

Binding port 0 and closing again gives a port from the kernel's ephemeral range,
which any outgoing connection on the machine may take before the server binds it
(a clean-clone run saw mosquitto's WebSocket listener fail so). A port below that
range is never given to an outgoing connection; it is checked free on every address
(libwebsockets binds the wildcard whatever address it is told), and chosen at random
so that two tests asking at once do not get the same one."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free(port: int) -> bool:
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host: nothing can hold the port there
            continue
        with probe:
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def unused_tcp_port() -> int:
    ceiling = _ephemeral_start()
    if ceiling <= LOWEST + 1000:  # a range that starts low: the ports above it
        low, ceiling = 61_000, 65_536
    else:
        low = LOWEST
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(low, ceiling)
        if _free(port):
            return port
    raise RuntimeError(f"no free TCP port in {LOWEST}-{ceiling - 1}")
