"""Accepting HTTP connections without letting anyone exhaust the daemon's descriptors.

aiohttp's sites hand the listening socket to asyncio, which accepts whatever arrives:
every connection holds a descriptor from accept until TLS has finished and a request
has come, with no bound on either. 1,100 connections that never sent a ClientHello
used up a service's 1,024 descriptors; asyncio then logged "socket.accept() out of
system resource" about 6,000 times a second and the camera answered nobody.

Here the daemon accepts for itself and counts: connections per address and in total
stay under caps chosen below the descriptor limit (viewers' UDP sockets, the camera
and files keep their share); a connection over a cap is reset at once; TLS must finish
within a handshake timeout; aiohttp's keep-alive timeout (set by the caller) then
bounds the time to a complete first request and between requests. When accept itself
fails for want of descriptors, the loop waits before trying again instead of spinning.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import errno
import logging
import resource
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from peercam.service.native_memory import return_free_memory

logger = logging.getLogger(__name__)

# Descriptors kept back for everything that is not an HTTP connection: the camera and
# its encoder, the microphone and speaker, clip files, the log, the event loop's own,
# executor threads, the credential store.
BASE_RESERVE = 128
# Per viewer the limit allows: aioice's UDP sockets (one per local address, a TURN
# allocation) and a TURN/TCP connection; generous, because running out is the failure.
PER_VIEWER_RESERVE = 8
# Whatever the limit, never fewer than this, nor more than can be useful on a Pi.
MIN_CONNECTIONS, MAX_CONNECTIONS = 32, 2048
# Out of descriptors at accept: wait this long before accepting again.
EXHAUSTED_PAUSE = 0.5

_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

# asyncio gives every TLS connection a read buffer of `SSLProtocol.max_size`, 256 KiB
# (Lib/asyncio/sslproto.py), allocated at once and kept for the connection's life:
# 200 idle WebSockets took 59 MB, and glibc kept it after they closed. A TLS record
# holds at most 16 KiB, and a camera's clients send small requests.
TLS_READ_BUFFER = 32 * 1024
# After this many connections have closed, free heap pages go back to the kernel: a
# burst of connections otherwise leaves the daemon's RSS at its peak for good.
TRIM_AFTER_CLOSED = 64


@dataclass(frozen=True)
class ConnectionLimits:
    total: int
    per_address: int
    handshake_timeout: float


def descriptor_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def total_for(descriptors: int, max_viewers: int) -> int:
    """Concurrent HTTP connections that leave room for `max_viewers` viewers."""
    room = descriptors - BASE_RESERVE - PER_VIEWER_RESERVE * max_viewers
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, room))


class _Counted(asyncio.Protocol):
    """Stands between the transport and aiohttp's protocol to learn when the
    connection ends; everything else is passed on unchanged."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._inner.connection_lost(exc)


class GuardedListener:
    """Accepts on one listening socket and hands connections to `protocol_factory`
    (aiohttp's `runner.server`), within `limits`."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        limits: ConnectionLimits,
        context: ssl.SSLContext | None,
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        if context is not None:
            use_small_tls_buffers()
        self._factory = protocol_factory
        self.limits = limits
        self._context = context
        self._on_refused = on_refused
        self._open: Counter[str] = Counter()
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._socket: socket.socket | None = None
        self._exhausted_logged = False
        self._closed_since_trim = 0

    @property
    def open_connections(self) -> int:
        return sum(self._open.values())

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks one) and return the port bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        listening = socket.socket(family, kind, proto)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(address)
            listening.listen(128)
            listening.setblocking(False)
        except OSError:
            listening.close()
            raise
        self._socket = listening
        self._accepting = asyncio.create_task(self._accept_loop(listening), name="http-accept")
        return int(listening.getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting and drop connections still in their TLS handshake; the ones
        aiohttp holds are closed by its runner."""
        tasks = [*self._handshakes, *([self._accepting] if self._accepting else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, address = await loop.sock_accept(listening)
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    raise
                # Once per episode, not once per attempt: each try fails the same way.
                if not self._exhausted_logged:
                    logger.warning("out of descriptors accepting connections: %s", error)
                    self._exhausted_logged = True
                self._on_refused("descriptors")
                await asyncio.sleep(EXHAUSTED_PAUSE)
                continue
            self._exhausted_logged = False
            client = str(address[0])
            reason = self._over_limit(client)
            if reason is not None:
                _reset(connection)
                self._on_refused(reason)
                continue
            self._open[client] += 1
            task = asyncio.create_task(self._hand_over(connection, client), name="http-tls")
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _over_limit(self, client: str) -> str | None:
        if self.open_connections >= self.limits.total:
            return "total"
        if self._open[client] >= self.limits.per_address:
            return "per-address"
        return None

    async def _hand_over(self, connection: socket.socket, client: str) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[client] -= 1
                if self._open[client] <= 0:
                    del self._open[client]
                self._closed_since_trim += 1
                if self._closed_since_trim >= TRIM_AFTER_CLOSED:
                    self._closed_since_trim = 0
                    return_free_memory()

        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Counted(self._factory(), release),
                connection,
                ssl=self._context,
                ssl_handshake_timeout=self.limits.handshake_timeout if self._context else None,
            )
        except asyncio.CancelledError:
            connection.close()
            release()
            raise
        except Exception as error:  # whatever ended it, the count must drop
            # A scanner, a client that gave up, a handshake too slow: nothing to log
            # above debug, and its descriptor is free again.
            logger.debug("connection from %s dropped before its first request: %s", client, error)
            connection.close()
            release()


def use_small_tls_buffers() -> None:
    """Process-wide: TLS connections made after this read into TLS_READ_BUFFER.
    tests/test_connection_limits.py checks the attribute still exists."""
    if not isinstance(getattr(asyncio.sslproto.SSLProtocol, "max_size", None), int):
        raise RuntimeError("this Python's asyncio lacks the TLS buffer size peercam sets")
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def _reset(connection: socket.socket) -> None:
    """Close at once with a reset: no FIN handshake, no TIME_WAIT to hold anything."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    connection.close()
