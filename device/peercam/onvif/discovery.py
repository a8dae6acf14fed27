"""WS-Discovery (April 2005, as ONVIF uses it): the camera answers Probe and Resolve on
UDP 3702 and announces itself with Hello and Bye, so an NVR or Home Assistant lists it
without being told its address.

- One socket, bound to port 3702 on every address and joined to 239.255.255.250 on
  each IPv4 interface address (rescanned: at boot the network may come up after us).
  IPv6 (ff02::c) is not served.
- A Probe is answered when each of its Types is ours (dn:NetworkVideoTransmitter,
  tds:Device) and each of its Scopes matches one of ours; a Resolve when it names our
  endpoint. The answer goes to the sender only, after a random delay of up to
  APP_MAX_DELAY as the specification asks (many devices answer one multicast probe),
  and its XAddrs carry the address the sender reaches us at: the kernel's route
  back to it, which on a box with several interfaces is the interface it came in on.
- Everything received is hostile until parsed: datagrams past MAX_DATAGRAM are
  dropped unread, defusedxml refuses any document type declaration (the way to entity
  bombs and external entities), and elements are capped in number and depth.
  Answers are rate-limited in total and per sender address, so a forged source
  address cannot turn the camera into an amplifier; replies never go to a ReplyTo
  named in the message.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ifaddr

from peercam.onvif.discovery_messages import (
    DiscoveryIdentity,
    MalformedMessage,
    Probe,
    Resolve,
    bye_message,
    hello_message,
    match_message,
    parse_message,
    probe_matches,
)

logger = logging.getLogger(__name__)

PORT = 3702
GROUP = "239.255.255.250"
APP_MAX_DELAY = 0.5  # seconds, WS-Discovery's bound on the wait before answering
# SOAP-over-UDP repeats each message once, after a random 50-250 ms; receivers drop
# the copy by its MessageID.
REPEAT_DELAY = (0.05, 0.25)
MULTICAST_TTL = 1  # the local network only
RESCAN_EVERY = 15.0  # seconds between looks for interfaces that came or went
MAX_DATAGRAM = 16 * 1024  # probes are well under 2 KiB; bigger ones are not read
PARSES_PER_SECOND = 200.0  # past it datagrams are dropped unparsed: a flood costs little
ANSWERS_PER_SECOND = 10.0  # to everyone together
ANSWERS_PER_SOURCE = 1.0  # per second to one address, after a burst of SOURCE_BURST
SOURCE_BURST = 4.0
MAX_SOURCES = 512  # sender addresses remembered by the per-address limit
MAX_PENDING = 32  # answers waiting out their delay
RECENT_MESSAGES = 128  # (MessageID, sender) pairs remembered to drop repeated probes
LOG_EVERY = 10.0  # seconds between two "ignored" log lines


# -- limits ------------------------------------------------------------------------


@dataclass
class _Bucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    stamp: float

    def refilled(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def take(self, now: float) -> bool:
        self.tokens, self.stamp = self.refilled(now), now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _bucket(rate: float, burst: float) -> _Bucket:
    return _Bucket(rate, burst, burst, time.monotonic())


class _AnswerLimit:
    """At most `per_second` answers in all, and ANSWERS_PER_SOURCE to any one address:
    a forged sender gets little, and a flood of them cannot starve the rest for long."""

    def __init__(self, per_second: float) -> None:
        self._all = _bucket(per_second, 2 * per_second)
        self._sources: dict[str, _Bucket] = {}

    def allow(self, source: str) -> bool:
        now = time.monotonic()
        bucket = self._sources.get(source)
        if bucket is None:
            if len(self._sources) >= MAX_SOURCES:
                self._sources = {
                    s: b for s, b in self._sources.items() if b.refilled(now) < b.burst
                }
                if len(self._sources) >= MAX_SOURCES:
                    return False
            bucket = self._sources[source] = _bucket(ANSWERS_PER_SOURCE, SOURCE_BURST)
        return bucket.take(now) and self._all.take(now)


class _ThrottledLog:
    """A log line at most every LOG_EVERY seconds, counting the ones left out: what
    strangers send must not fill the log."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        self._level = level
        self._last = -LOG_EVERY
        self._skipped = 0

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last < LOG_EVERY:
            self._skipped += 1
            return
        more = f" (and {self._skipped} more since the last)" if self._skipped else ""
        logger.log(self._level, message + more, *args, exc_info=exc_info)
        self._last, self._skipped = now, 0


# -- the responder -----------------------------------------------------------------


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram
        self._failed = _ThrottledLog(logging.ERROR)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self._on_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # a bug of ours must not stop discovery for everyone
            self._failed("WS-Discovery: a datagram from %s", addr[0], exc_info=True)

    def error_received(self, exc: Exception) -> None:
        logger.debug("WS-Discovery: %s", exc)  # e.g. ICMP unreachable after an answer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _bound_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        # Other discovery software on this host (a WSDiscovery client in Home
        # Assistant, wsdd) binds 3702 too. With SO_REUSEPORT Linux spreads unicast
        # datagrams among such sockets; multicast ones reach all of them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            except OSError:
                pass
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # a client on this host
        sock.setblocking(False)
        sock.bind(("", port))
    except BaseException:
        sock.close()
        raise
    return sock


def _local_address_towards(remote: str) -> str | None:
    """Our address on the route back to `remote` (connecting a UDP socket sends
    nothing; the kernel only picks the route and source address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as route:
        try:
            route.connect((remote, 9))
            return str(route.getsockname()[0])
        except OSError:
            return None


def interface_addresses(interfaces: Sequence[str] = ()) -> list[str]:
    """The IPv4 addresses to serve: of the named interfaces (names or addresses), or
    of every interface but loopback when none are named."""
    wanted = set(interfaces)
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip
            if not isinstance(address, str) or address in found:
                continue
            if wanted:
                if not wanted & {adapter.name, adapter.nice_name, address}:
                    continue
            elif address.startswith("127."):
                continue
            found.append(address)
    return found


class WsDiscoveryResponder:
    """The camera's WS-Discovery target service. `xaddr_for(local_ip)` gives the
    device service URL(s, space-separated) at one of our addresses."""

    def __init__(
        self,
        identity: DiscoveryIdentity,
        xaddr_for: Callable[[str], str],
        port: int = PORT,
        interfaces: Sequence[str] = (),
        *,
        max_delay: float = APP_MAX_DELAY,
        rescan_every: float = RESCAN_EVERY,
        answers_per_second: float = ANSWERS_PER_SECOND,
    ) -> None:
        self._identity = identity
        self._xaddr_for = xaddr_for
        self.port = port
        self._interfaces = tuple(interfaces)
        self._max_delay = max_delay
        self._rescan_every = rescan_every
        self._answers_per_second = answers_per_second
        self._socket: socket.socket | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._joined: set[str] = set()
        self._unjoinable: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._instance_id = 0
        self._message_number = 0
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._parses = _bucket(PARSES_PER_SECOND, 2 * PARSES_PER_SECOND)
        self._answers = _AnswerLimit(answers_per_second)
        self._ignored = _ThrottledLog()

    @property
    def identity(self) -> DiscoveryIdentity:
        return self._identity

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses it is joined on."""
        return tuple(sorted(self._joined))

    async def start(self) -> None:
        if self._transport is not None:
            return
        sock = _bound_socket(self.port)
        try:
            transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Protocol(self._received), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._socket, self._transport, self._protocol = sock, transport, protocol
        self.port = int(sock.getsockname()[1])
        # WS-Discovery: InstanceId grows each time the service comes back up.
        self._instance_id = max(int(time.time()), self._instance_id + 1)
        self._message_number = 0
        self._answers = _AnswerLimit(self._answers_per_second)
        try:
            self._refresh_addresses()
            if self._rescan_every > 0:
                self._spawn(self._rescan(), "ws-discovery-rescan")
        except BaseException:
            await self.stop()
            raise
        logger.info("WS-Discovery on UDP %d, joined on %s", self.port,
                    ", ".join(self.addresses) or "no interface yet")  # fmt: skip

    async def stop(self) -> None:
        transport, protocol = self._transport, self._protocol
        if transport is None or protocol is None:
            return
        self._transport = self._protocol = None  # a second stop() has nothing to do
        try:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._joined:
                bye = bye_message(self._identity, self._instance_id, self._next_number())
                self._multicast_everywhere(bye)
                await asyncio.sleep(random.uniform(*REPEAT_DELAY))
                self._multicast_everywhere(bye)
        finally:
            self._tasks.clear()
            transport.close()
            await protocol.closed  # the socket is closed when connection_lost has run
            self._socket = None
            self._joined.clear()
            self._recent.clear()

    def set_identity(self, identity: DiscoveryIdentity) -> None:
        """New scopes (a new name, say): announced with a Hello on every interface."""
        old = self._identity
        if identity.scopes != old.scopes and identity.metadata_version <= old.metadata_version:
            identity = replace(identity, metadata_version=old.metadata_version + 1)
        self._identity = identity
        if self._transport is not None:
            for address in sorted(self._joined):
                self._spawn(self._hello(address), f"ws-discovery-hello-{address}")

    # -- interfaces ------------------------------------------------------------------

    def _refresh_addresses(self) -> None:
        current = interface_addresses(self._interfaces)
        # A membership belongs to the interface, not to the address: the kernel drops
        # it with the interface, and an address that changed joins again below (or is
        # told it is already in).
        self._joined &= set(current)
        for address in current:
            if address not in self._joined and self._join(address):
                self._joined.add(address)
                self._spawn(self._hello(address), f"ws-discovery-hello-{address}")

    def _join(self, address: str) -> bool:
        assert self._socket is not None
        request = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(address))
        try:
            self._socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:  # another address of the same interface
                return True
            if address not in self._unjoinable:  # said once; tried again at each rescan
                self._unjoinable.add(address)
                logger.info("WS-Discovery: cannot join the group on %s: %s", address, error)
            return False
        return True

    async def _rescan(self) -> None:
        while True:
            await asyncio.sleep(self._rescan_every)
            try:
                self._refresh_addresses()
            except Exception:
                logger.exception("WS-Discovery: looking for interfaces")

    # -- sending ---------------------------------------------------------------------

    def _next_number(self) -> int:
        self._message_number += 1
        return self._message_number

    def _xaddrs(self, address: str) -> str | None:
        try:
            return self._xaddr_for(address)
        except Exception:
            logger.exception("WS-Discovery: no device service URL for %s", address)
            return None

    async def _hello(self, address: str) -> None:
        xaddrs = self._xaddrs(address)
        if xaddrs is None:
            return
        hello = hello_message(self._identity, xaddrs, self._instance_id, self._next_number())
        self._multicast(address, hello)
        await asyncio.sleep(random.uniform(*REPEAT_DELAY))
        self._multicast(address, hello)

    def _multicast_everywhere(self, message: bytes) -> None:
        for address in sorted(self._joined):
            self._multicast(address, message)

    def _multicast(self, address: str, message: bytes) -> None:
        """Out of the interface that has `address`. The option and the send go
        together, with no await between them; a send that would block is dropped
        (the message is repeated anyway)."""
        sock = self._socket
        if sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
            sock.sendto(message, (GROUP, self.port))
        except OSError as error:
            logger.debug("WS-Discovery: multicast on %s: %s", address, error)

    # -- receiving -------------------------------------------------------------------

    def _received(self, data: bytes, sender: tuple[str, int]) -> None:
        if len(data) > MAX_DATAGRAM:
            self._ignored("WS-Discovery: ignored %d bytes from %s: too big", len(data), sender[0])
            return
        if not self._parses.take(time.monotonic()):
            return
        try:
            message = parse_message(data)
        except MalformedMessage as error:
            self._ignored("WS-Discovery: ignored a datagram from %s: %s", sender[0], error)
            return
        if message is None:
            return
        # Clients send each probe several times, with one MessageID; a client with
        # several interfaces sends it from each (and is answered on each).
        key = (message.message_id, sender[0])
        if key in self._recent:
            return
        self._recent[key] = None
        if len(self._recent) > RECENT_MESSAGES:
            self._recent.popitem(last=False)
        if isinstance(message, Probe):
            if not probe_matches(self._identity, message):
                return
        elif message.address.lower() != self._identity.address.lower():
            return
        if len(self._tasks) >= MAX_PENDING or not self._answers.allow(sender[0]):
            self._ignored("WS-Discovery: not answering %s: too many requests", sender[0])
            return
        self._spawn(self._answer(message, sender), "ws-discovery-answer")

    async def _answer(self, request: Probe | Resolve, sender: tuple[str, int]) -> None:
        await asyncio.sleep(random.uniform(0, self._max_delay))
        local = _local_address_towards(sender[0])
        xaddrs = self._xaddrs(local) if local else None
        if xaddrs is None:
            return
        answer = match_message(
            request, self._identity, xaddrs, self._instance_id, self._next_number()
        )
        self._unicast(answer, sender)
        await asyncio.sleep(random.uniform(*REPEAT_DELAY))
        self._unicast(answer, sender)

    def _unicast(self, message: bytes, to: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(message, to)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
