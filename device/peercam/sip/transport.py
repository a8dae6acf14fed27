"""Where SIP messages go in and out (RFC 3261 §18): one UDP socket, and TCP
connections opened to a target as needed and kept. Responses are handed to whoever
waits on their branch (transaction.py); requests to the endpoint's owner. What cannot
be parsed is logged with its sender and dropped: a peer's garbage must not reach the
dialogs, nor stop the socket."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from peercam.sip.message import (
    Address,
    CSeq,
    Message,
    Request,
    Response,
    SipError,
    StreamFramer,
    Via,
    parse,
    response_to,
)

logger = logging.getLogger(__name__)

TRANSPORTS = ("UDP", "TCP", "TLS")


@dataclass(frozen=True)
class Target:
    transport: str  # UDP, TCP or TLS
    host: str
    port: int
    # The name its TLS certificate must carry, when `host` is the address it was
    # looked up to (RFC 5922 §7: the configured name, not the address).
    name: str = field(default="", compare=False)


RequestHandler = Callable[[Request, Target], None]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._endpoint.received(data, Target("UDP", addr[0], addr[1]), stream=False)

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable from a registrar that is down: its transaction
        # times out and says so; nothing here to add.
        logger.debug("SIP over UDP: %s", exc)


class Endpoint:
    """peercam's SIP endpoint. `on_request` is called on the event loop."""

    def __init__(
        self, on_request: RequestHandler | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        """`tls`: how TLS targets' certificates are checked (the system's CAs when
        None)."""
        self._on_request = on_request
        self._tls = tls
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: dict[Target, asyncio.StreamWriter] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._sends: set[asyncio.Task[None]] = set()  # send_soon's over streams
        self._connecting: dict[Target, asyncio.Future[None]] = {}
        self._on_closed: dict[Target, list[Callable[[], None]]] = {}
        # By (branch, method): a CANCEL shares its INVITE's branch (§9.1).
        self._waiting: dict[tuple[str, str], Callable[[Response], None]] = {}

    async def open(self, host: str = "0.0.0.0", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, port)
        )
        self._udp = transport

    @property
    def udp_port(self) -> int:
        assert self._udp is not None, "open() first"
        return int(self._udp.get_extra_info("sockname")[1])

    def local_address(self, target: Target) -> tuple[str, int]:
        """The address `target` sees peercam at (for Via and Contact)."""
        writer = self._streams.get(target)
        if writer is not None:
            host, port = writer.get_extra_info("sockname")[:2]
            return str(host), int(port)
        # The interface the kernel would route to `target` through (no packet sent).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target.host, target.port))
            return str(probe.getsockname()[0]), self.udp_port

    async def connect(self, target: Target) -> None:
        """Open the stream to a TCP target (a no-op for UDP). Callers that ask at once
        share one connection attempt."""
        if target.transport == "UDP" or target in self._streams:
            return
        pending = self._connecting.get(target)
        if pending is None:
            pending = asyncio.ensure_future(self._open_stream(target))
            self._connecting[target] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(target, None))
        await asyncio.shield(pending)

    async def _open_stream(self, target: Target) -> None:
        if target.transport == "TLS":
            context = self._tls or ssl.create_default_context()
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context,
                server_hostname=target.name or target.host,
            )  # fmt: skip
        else:
            reader, writer = await asyncio.open_connection(target.host, target.port)
        self._streams[target] = writer
        task = asyncio.create_task(
            self._read(target, reader, writer), name=f"sip-tcp-{target.host}"
        )
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def send(self, message: Message, target: Target) -> None:
        if target.transport == "UDP":
            self._send_datagram(message, target)
            return
        await self.connect(target)
        writer = self._streams.get(target)
        if writer is None:
            raise ConnectionResetError(f"the connection to {target.host}:{target.port} closed")
        writer.write(message.to_bytes())
        await writer.drain()

    def send_soon(self, message: Message, target: Target) -> None:
        """`send` from a callback: at once over UDP, else in a task the endpoint owns
        (cancelled at `close`); a failure is logged, not raised."""
        if target.transport == "UDP":
            self._send_datagram(message, target)
            return
        task = asyncio.create_task(self._send_logged(message, target), name="sip-send")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _send_datagram(self, message: Message, target: Target) -> None:
        assert self._udp is not None, "open() first"
        self._udp.sendto(message.to_bytes(), (target.host, target.port))

    async def _send_logged(self, message: Message, target: Target) -> None:
        try:
            await self.send(message, target)
        except OSError as error:
            logger.info("SIP to %s:%d not sent: %s", target.host, target.port, error)

    def wait_for(self, branch: str, method: str, on_response: Callable[[Response], None]) -> None:
        self._waiting[branch, method] = on_response

    def when_closed(self, target: Target, callback: Callable[[], None]) -> Callable[[], None]:
        """`callback` each time the connection to a TCP or TLS `target` closes (the
        registrar's: its binding points at a port nothing listens on any more); the
        function returned stops it."""
        self._on_closed.setdefault(target, []).append(callback)
        return lambda: self._on_closed.get(target, []).remove(callback)

    async def keep_alive(self, target: Target) -> None:
        """A CRLF ping on the connection to `target` (RFC 5626 §4.4.1), which also finds
        out that it has gone. OSError if it has."""
        if target.transport == "UDP":
            return
        writer = self._streams.get(target)
        if writer is None or writer.is_closing():
            raise ConnectionResetError(f"no connection to {target.host}:{target.port}")
        writer.write(b"\r\n\r\n")
        await writer.drain()

    def stop_waiting(self, branch: str, method: str) -> None:
        self._waiting.pop((branch, method), None)

    async def _read(
        self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65_536):
                for message in framer.feed(data):
                    self._dispatch_guarded(message, target)
        except SipError as error:
            logger.info(
                "SIP from %s:%d: %s; closing the connection", target.host, target.port, error
            )
        except OSError as error:  # a reset, a TLS failure
            logger.info("SIP connection to %s:%d: %s", target.host, target.port, error)
        finally:
            # Only this reader's connection: a newer one to the same target stays.
            if self._streams.get(target) is writer:
                del self._streams[target]
                for on_closed in list(self._on_closed.get(target, [])):
                    on_closed()
            writer.close()

    def received(self, data: bytes, source: Target, stream: bool) -> None:
        if not data.strip(b"\r\n"):
            return  # a keep-alive
        try:
            message = parse(data, stream=stream)
        except SipError as error:
            logger.info("SIP from %s:%d dropped: %s", source.host, source.port, error)
            return
        self._dispatch_guarded(message, source)

    def _dispatch_guarded(self, message: Message, source: Target) -> None:
        """A fault of ours on one message must not stop the socket or the connection."""
        try:
            self._dispatch(message, source)
        except Exception:
            logger.exception("SIP: a message from %s:%d failed", source.host, source.port)

    def _dispatch(self, message: Message, source: Target) -> None:
        if isinstance(message, Response):
            try:
                branch = Via.parse(message.headers.require("Via")).branch
                method = CSeq.parse(message.headers.require("CSeq")).method
            except SipError as error:
                logger.info("SIP response from %s dropped: %s", source.host, error)
                return
            waiter = self._waiting.get((branch or "", method))
            if waiter is not None:
                waiter(message)
            return
        problem = _unusable(message)
        if problem is not None:
            # §8.2: a request without the headers every request has is answered 400
            # where it can be (it has a Via to answer along), else dropped.
            logger.info("SIP %s from %s dropped: %s", message.method, source.host, problem)
            if message.headers.get("Via") is not None and "Via" not in problem:
                self.send_soon(
                    response_to(message, 400, "Bad Request"), reply_target(message, source)
                )
            return
        if self._on_request is not None:
            self._on_request(message, source)

    async def close(self) -> None:
        tasks = [*self._readers, *self._sends, *self._connecting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in self._streams.values():
            writer.close()
        self._streams.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None


def _unusable(request: Request) -> str | None:
    """Why `request` cannot be handled (a header every request has is missing or
    malformed), or None."""
    try:
        Via.parse(request.headers.require("Via"))
    except SipError as error:
        return f"Via: {error}"
    try:
        Address.parse(request.headers.require("From"))
        Address.parse(request.headers.require("To"))
        CSeq.parse(request.headers.require("CSeq"))
        request.headers.require("Call-ID")
    except SipError as error:
        return str(error)
    return None


def reply_target(request: Request, source: Target) -> Target:
    """Where a response to `request` goes (§18.2.2 with RFC 3581): over a stream, back
    on it; over UDP, to the address it came from (never a host the peer names), at
    its Via's port unless it asked for rport or gave none."""
    if source.transport != "UDP":
        return source
    via = Via.parse(request.headers.require("Via"))
    if "rport" in dict(via.params) or via.port is None:
        return source
    return Target("UDP", source.host, via.port)
