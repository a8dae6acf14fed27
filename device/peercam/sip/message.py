"""SIP messages (RFC 3261 §7, §20, §25): parsed from and written to bytes, and the
header values peercam reads (addresses, Via, CSeq). All of SIP's text handling lives
here; everything else sees typed values. Anything malformed raises `SipError`, which
a transport answers with 400 (a request) or drops (a response), never more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# RFC 3261 §7.3.3: the one-letter forms a peer may send instead of the full names.
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "u": "Allow-Events", "r": "Refer-To",
}  # fmt: skip
# Header names as written, so that what peercam sends reads as the RFC spells it.
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT.values(), "CSeq", "Max-Forwards", "WWW-Authenticate", "Proxy-Authenticate",
        "Authorization", "Proxy-Authorization", "User-Agent", "Allow", "Expires",
        "Record-Route", "Route", "Min-Expires", "Accept", "Server", "Reason", "Require",
        "Unsupported",
    )
}  # fmt: skip
# Headers whose comma-separated values are separate entries (§7.3.1); the others (the
# authentication ones above all) keep their commas.
_LISTS = {"via", "contact", "route", "record-route", "allow", "supported", "require"}
MAX_MESSAGE = 65_535  # a UDP datagram's worth; a longer message on TCP is refused too
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_VERSION = "SIP/2.0"


class SipError(ValueError):
    """A message, or a header in it, that is not valid SIP."""


_NUMBER = re.compile(r"[0-9]{1,10}")


def is_number(text: str) -> bool:
    """ASCII digits only, and not too many: `str.isdigit` takes "²", which `int`
    then refuses, and `int` of thousands of digits is refused (or slow)."""
    return _NUMBER.fullmatch(text) is not None


def canonical(name: str) -> str:
    name = COMPACT.get(name.lower(), name) if len(name) == 1 else name
    return _CANONICAL.get(name.lower(), "-".join(p.capitalize() for p in name.split("-")))


class Headers:
    """Ordered, case-insensitive, several values per name."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with one."""
        key = canonical(name).lower()
        at = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]
        self._items.insert(len(self._items) if at is None else at, (canonical(name), value))

    def remove(self, name: str) -> None:
        key = canonical(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def get_all(self, name: str) -> list[str]:
        key = canonical(name).lower()
        values = [v for n, v in self._items if n.lower() == key]
        if key in _LISTS:
            return [part for value in values for part in split_list(value)]
        return values

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SipError(f"no {canonical(name)} header")
        return value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)


def split_list(value: str) -> list[str]:
    """A header's comma-separated entries; commas inside quotes or <> do not split."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angled = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        elif char == "," and not quoted and not angled:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


@dataclass
class Request:
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.method} {self.uri} {_VERSION}", self.headers, self.body)


@dataclass
class Response:
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return _serialize(f"{_VERSION} {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


def response_to(request: Request, status: int, reason: str, to_tag: str | None = None) -> Response:
    """A response to `request` with the headers §8.2.6.2 copies (Via, From, To, Call-ID,
    CSeq), and `to_tag` added to To where it has none."""
    response = Response(status, reason)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            response.headers.add(name, value)
    to = request.headers.get("To")
    if to_tag is not None and to is not None and Address.parse(to).tag is None:
        response.headers.set("To", str(Address.parse(to).with_param("tag", to_tag)))
    return response


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines += [f"{name}: {value}" for name, value in headers if name != "Content-Length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data: bytes, stream: bool = False) -> Message:
    """One whole message. On a datagram (`stream` False) the body is what follows the
    headers, cut to Content-Length where given (§18.3); on a stream, Content-Length is
    required and must match."""
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} bytes")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = data.partition(b"\n\n")  # bare LF, tolerated (§7.5)
        if not separator:
            raise SipError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SipError("headers are not UTF-8") from error
    lines = _unfold(text.lstrip("\r\n").replace("\r\n", "\n").split("\n"))
    if not lines or not lines[0]:
        raise SipError("empty message")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipError(f"not a header line: {line[:80]!r}")
        headers.add(name, value.strip())
    length = headers.get("Content-Length")
    if length is not None:
        if not is_number(length):
            raise SipError(f"Content-Length {length[:20]!r}")
        wanted = int(length)
        if wanted > len(body) or (stream and wanted != len(body)):
            raise SipError(f"Content-Length {wanted} but {len(body)} bytes of body")
        body = body[:wanted]
    elif stream:
        raise SipError("no Content-Length on a stream transport")
    return _start_line(lines[0], headers, body)


def _unfold(lines: list[str]) -> list[str]:
    """Header lines with their continuations (leading white space) joined (§7.3.1)."""
    joined: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and joined:
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    return joined


def _start_line(line: str, headers: Headers, body: bytes) -> Message:
    parts = line.split(" ", 2)
    if len(parts) != 3:
        raise SipError(f"start line {line[:80]!r}")
    if parts[0] == _VERSION:
        if not (is_number(parts[1]) and len(parts[1]) == 3 and 100 <= int(parts[1]) <= 699):
            raise SipError(f"status {parts[1][:10]!r}")
        return Response(int(parts[1]), parts[2], headers, body)
    method, uri, version = parts
    if version != _VERSION:
        raise SipError(f"version {version[:20]!r}")
    if not _TOKEN.match(method) or not uri or " " in uri:
        raise SipError(f"request line {line[:80]!r}")
    return Request(method, uri, headers, body)


class StreamFramer:
    """Messages cut from a TCP or TLS byte stream (§18.3: by Content-Length).
    CRLF keep-alives between messages (RFC 5626 §3.5.1) are skipped."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise SipError("headers longer than a message may be")
                return messages
            head = self._buffer[:end]
            found = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,10})[ \t]*$", head)
            if found is None:
                raise SipError("no Content-Length on a stream transport")
            total = end + 4 + int(found.group(1))
            if total > MAX_MESSAGE:
                raise SipError(f"message of {total} bytes")
            if len(self._buffer) < total:
                return messages
            messages.append(parse(self._buffer[:total], stream=True))
            self._buffer = self._buffer[total:]


# --- header values ---------------------------------------------------------------


def parse_params(text: str) -> dict[str, str]:
    """`;name=value;flag` → {name: value, flag: ""} (names lower-cased, quotes off)."""
    params: dict[str, str] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        params[name.strip().lower()] = unquote(value.strip())
    return params


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Address:
    """A From, To or Contact value: `"Name" <sip:user@host>;tag=x`."""

    uri: str
    display: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        display = ""
        if "<" in text:
            before, _, rest = text.partition("<")
            uri, closed, after = rest.partition(">")
            if not closed:
                raise SipError(f"address without '>': {text[:80]!r}")
            display = unquote(before.strip())
            params = parse_params(after.lstrip().removeprefix(";")) if after.strip() else {}
        else:
            # Without <>, parameters after the URI belong to the header (§20.10).
            uri, _, after = text.partition(";")
            params = parse_params(after)
        uri = uri.strip()
        if ":" not in uri or " " in uri:
            raise SipError(f"address URI {uri[:80]!r}")
        return cls(uri, display, tuple(params.items()))

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def with_param(self, name: str, value: str) -> Address:
        kept = tuple((n, v) for n, v in self.params if n != name)
        return Address(self.uri, self.display, (*kept, (name, value)))

    def __str__(self) -> str:
        display = f"{quote(self.display)} " if self.display else ""
        params = "".join(f";{n}={v}" if v else f";{n}" for n, v in self.params)
        return f"{display}<{self.uri}>{params}"


@dataclass(frozen=True)
class Via:
    transport: str  # UDP, TCP, TLS
    host: str
    port: int | None
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        found = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", text)
        if found is None:
            raise SipError(f"Via {text[:80]!r}")
        host, port = split_host_port(found.group(2))
        return cls(
            found.group(1).upper(), host, port, tuple(parse_params(found.group(3) or "").items())
        )

    @property
    def branch(self) -> str | None:
        return dict(self.params).get("branch")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host if self.port is None else f"{host}:{self.port}"
        params = "".join(f";{n}={v}" if v else f";{n}" for n, v in self.params)
        return f"SIP/2.0/{self.transport} {where}{params}"


@dataclass(frozen=True)
class SipUri:
    """The parts of a sip: URI peercam routes by (RFC 3261 §19.1)."""

    user: str
    host: str
    port: int | None
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, uri: str) -> SipUri:
        scheme, colon, rest = uri.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise SipError(f"not a SIP URI: {uri[:80]!r}")
        rest = rest.split("?", 1)[0]
        address, _, params = rest.partition(";")
        user, at, hostport = address.rpartition("@")
        host, port = split_host_port(hostport)
        return cls(user if at else "", host, port, tuple(parse_params(params).items()))

    @property
    def transport(self) -> str | None:
        value = dict(self.params).get("transport")
        return value.upper() if value else None


def split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SipError(f"host {text[:80]!r}")
    if not port_text:
        return host, None
    if not is_number(port_text) or not 0 < int(port_text) < 65536:
        raise SipError(f"port {port_text[:10]!r}")
    return host, int(port_text)


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not is_number(parts[0]) or not _TOKEN.match(parts[1]):
            raise SipError(f"CSeq {text[:40]!r}")
        number = int(parts[0])
        if number >= 2**31:  # §8.1.1.5
            raise SipError(f"CSeq number {number}")
        return cls(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"
