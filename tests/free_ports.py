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


def _free(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            probe = socket.socket(family, kind)
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
    return unused_port()


def unused_port(udp: bool = False, next_tcp: int = 0) -> int:
    """A free TCP port (and UDP too, with `udp`; and the `next_tcp` TCP ports after it:
    baresip listens for TLS on its SIP port + 1)."""
    ceiling = _ephemeral_start()
    if ceiling <= LOWEST + 1000:  # a range that starts low: the ports above it
        low, ceiling = 61_000, 65_536
    else:
        low = LOWEST
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(low, ceiling - next_tcp)
        if (
            all(_free(port + n) for n in range(next_tcp + 1))
            and (not udp or _free(port, socket.SOCK_DGRAM))
        ):  # fmt: skip
            return port
    raise RuntimeError(f"no free port in {low}-{ceiling - 1}")
