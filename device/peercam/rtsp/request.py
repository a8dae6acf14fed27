"""RTSP/1.0 messages (RFC 2326 §6, §7): reading a request off a stream, writing a
response. Interleaved RTP/RTCP frames (§10.12: '$', channel, 16-bit length) share the
stream with requests; `read_message` returns either.

Limits keep a bad or hostile client from costing memory: a request line and headers of
at most MAX_HEAD bytes, at most MAX_HEADERS headers, a body of at most MAX_BODY bytes.
A request past them, or unreadable, is a RtspError with the status to answer before
the connection is closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_HEAD = 8192
MAX_HEADERS = 64
MAX_BODY = 16384
VERSION = "RTSP/1.0"

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    451: "Parameter Not Understood",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
    551: "Option not supported",
}


class RtspError(Exception):
    """A request that gets `status` and, when `close`, the end of the connection."""

    def __init__(
        self,
        status: int,
        reason: str,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.close = close
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    uri: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps the last
    body: bytes = b""

    @property
    def cseq(self) -> str | None:
        return self.headers.get("cseq")

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Interleaved:
    """An interleaved frame a client sent (RTCP receiver reports, back-channel RTP)."""

    channel: int
    data: bytes


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # WWW-Authenticate may come more than once (Digest first: some clients take the
    # first they see).
    challenges: list[str] = field(default_factory=list)

    def serialize(self, cseq: str | None) -> bytes:
        lines = [f"{VERSION} {self.status} {REASONS.get(self.status, 'Error')}"]
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        for name, value in self.headers.items():
            lines.append(f"{name}: {value}")
        lines += [f"WWW-Authenticate: {challenge}" for challenge in self.challenges]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


async def read_message(reader: asyncio.StreamReader) -> Request | Interleaved | None:
    """The next request or interleaved frame; None at the end of the stream."""
    while True:
        first = await reader.read(1)
        if not first:
            return None
        if first == b"$":
            header = await reader.readexactly(3)
            length = int.from_bytes(header[1:3], "big")
            return Interleaved(header[0], await reader.readexactly(length))
        if first not in (b"\r", b"\n"):  # blank lines between requests are allowed
            break
    head = bytearray(first)
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line over the reader's own limit
            raise RtspError(431, f"request head over {MAX_HEAD} bytes", close=True) from None
        if not line:
            return None  # closed mid-request
        head += line
        if len(head) > MAX_HEAD:
            raise RtspError(431, f"request head over {MAX_HEAD} bytes", close=True)
        if line in (b"\r\n", b"\n"):
            break
    request = parse_head(bytes(head))
    length_text = request.header("content-length", "0")
    if not length_text.isdigit():
        raise RtspError(400, "Content-Length is not a number", close=True)
    length = int(length_text)
    if length > MAX_BODY:
        raise RtspError(413, f"body over {MAX_BODY} bytes", close=True)
    if length:
        request.body = await reader.readexactly(length)
    return request


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise RtspError(400, "the request is not UTF-8 text", close=True) from None
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise RtspError(400, "the request line is not 'METHOD URI RTSP/1.0'", close=True)
    method, uri, version = parts
    if version != VERSION:
        raise RtspError(505, f"{version[:20]!r} is not {VERSION}", close=True)
    if not method.isalpha() or not method.isupper() or len(method) > 20:
        raise RtspError(400, "the method is not a word in capitals", close=True)
    if len(lines) - 1 > MAX_HEADERS:
        raise RtspError(431, f"more than {MAX_HEADERS} headers", close=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or any(ch in name for ch in " \t"):
            raise RtspError(400, f"unreadable header line {line[:60]!r}", close=True)
        headers[name.strip().lower()] = value.strip()
    if "cseq" not in headers or not headers["cseq"].isdigit():
        raise RtspError(400, "every request needs a numeric CSeq")
    return Request(method, uri, headers)
