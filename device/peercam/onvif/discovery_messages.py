"""WS-Discovery's messages (April 2005, as ONVIF uses it): Probe and Resolve read
from a datagram with limits (defusedxml refuses document type declarations, the way
to entity bombs; elements are capped in number and depth), scopes matched by the
specification's rules, and Hello, Bye, ProbeMatches and ResolveMatches written.
The responder that sends and receives them is discovery.py."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

from defusedxml.ElementTree import ParseError, iterparse

logger = logging.getLogger(__name__)


SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN = "http://www.onvif.org/ver10/network/wsdl"
NS_TDS = "http://www.onvif.org/ver10/device/wsdl"

TO_DISCOVERY = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
TO_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTION_HELLO = f"{WSD}/Hello"
ACTION_BYE = f"{WSD}/Bye"
ACTION_PROBE = f"{WSD}/Probe"
ACTION_PROBE_MATCHES = f"{WSD}/ProbeMatches"
ACTION_RESOLVE = f"{WSD}/Resolve"
ACTION_RESOLVE_MATCHES = f"{WSD}/ResolveMatches"

# Matching rules for Scopes. The 2005 default is rfc2396; WS-Discovery 1.1 renamed it
# rfc3986 in its own namespace, and some clients send that name to 2005 devices.
MATCH_RFC2396 = f"{WSD}/rfc2396"
MATCH_RFC3986 = "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01/rfc3986"
MATCH_STRCMP0 = f"{WSD}/strcmp0"
_URI_RULES = {MATCH_RFC2396, MATCH_RFC3986}
_STRCMP_RULES = {MATCH_STRCMP0, "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01/strcmp0"}

_SEGMENT_SAFE = "-._~!$&'()*+,;=:"  # RFC 3986 pchar, less "@"
OUR_TYPES = frozenset({(NS_DN, "NetworkVideoTransmitter"), (NS_TDS, "Device")})
TYPES_TEXT = "dn:NetworkVideoTransmitter tds:Device"


MAX_ELEMENTS = 256
MAX_DEPTH = 16
MAX_MESSAGE_ID = 256  # characters; it is echoed in RelatesTo


# -- identity and scopes -----------------------------------------------------------


@dataclass(frozen=True)
class DiscoveryIdentity:
    """What the camera says about itself. `endpoint_uuid` must stay the same across
    restarts and interfaces (ONVIF keys devices on it); `metadata_version` goes up
    when the scopes change (set_identity does it when the caller did not)."""

    endpoint_uuid: str
    scopes: tuple[str, ...]
    metadata_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint_uuid", str(uuid.UUID(self.endpoint_uuid)))
        for scope in self.scopes:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"a scope is one URI with no spaces: {scope!r}")

    @property
    def address(self) -> str:
        """The endpoint reference's address."""
        return f"urn:uuid:{self.endpoint_uuid}"


def scope_segment(value: str) -> str:
    """`value` as one path segment of a scope URI, escaped as little as it may be.

    Spaces must be escaped (Scopes is a space-separated list), "/" too (Home Assistant
    takes the name after the last "/"), and "@" (the WSDiscovery client takes what
    comes before one for the authority). Everything else a segment may hold is kept,
    letters outside ASCII included: that client turns "%20" back into a space but no
    other escape, and Home Assistant would show an escaped "é" as "%C3%A9"."""
    kept = []
    for char in value:
        if (
            char.isalnum()
            or char in _SEGMENT_SAFE
            or (ord(char) > 127 and char.isprintable() and not char.isspace())
        ):
            kept.append(char)
        else:
            kept.append("".join(f"%{byte:02X}" for byte in char.encode()))
    segment = "".join(kept)
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def onvif_scopes(
    name: str,
    hardware: str,
    location: str = "unknown",
    *,
    profiles: Sequence[str] = ("Streaming", "T"),
    audio: bool = True,
    mac: str | None = None,
) -> tuple[str, ...]:
    """The ONVIF scopes (Core specification, 7.3.2.2) for a camera. `location` may have
    several levels ("city/Paris"). `mac`, when given, adds onvif://www.onvif.org/mac/...,
    which Home Assistant takes as the device's unique id instead of asking the device:
    it must then be the HwAddress that GetNetworkInterfaces reports, written the same
    way (lower case, colons)."""
    base = "onvif://www.onvif.org"
    scopes = [f"{base}/type/video_encoder"]
    if audio:
        scopes.append(f"{base}/type/audio_encoder")
    scopes += [f"{base}/Profile/{scope_segment(p)}" for p in profiles]
    if name:
        scopes.append(f"{base}/name/{scope_segment(name)}")
    scopes.append(f"{base}/hardware/{scope_segment(hardware or 'unknown')}")
    levels = [scope_segment(level) for level in location.split("/") if level]
    scopes.append(f"{base}/location/{'/'.join(levels or ['unknown'])}")
    if mac:
        scopes.append(f"{base}/mac/{scope_segment(mac)}")
    return tuple(scopes)


# -- reading messages --------------------------------------------------------------


class MalformedMessage(ValueError):
    """A datagram that is not a well-formed, acceptable WS-Discovery message."""


@dataclass(frozen=True)
class Probe:
    message_id: str
    types: frozenset[tuple[str, str]]  # (namespace, local name); "" when unresolvable
    scopes: tuple[str, ...]
    match_by: str


@dataclass(frozen=True)
class Resolve:
    message_id: str
    address: str


@dataclass
class _Element:
    namespace: str
    name: str
    attributes: dict[str, str]
    prefixes: dict[str | None, str]  # in scope here: for QNames inside text (Types)
    children: list[_Element] = field(default_factory=list)
    text: str = ""

    def child(self, namespace: str, name: str) -> _Element | None:
        for element in self.children:
            if element.namespace == namespace and element.name == name:
                return element
        return None

    def content(self) -> str:
        return self.text.strip()


def _parse_xml(data: bytes) -> _Element:
    """The element tree of `data`. Any document type declaration is refused: entity
    bombs and external entities need one. ElementTree forgets namespace prefixes, and
    the QNames in Types need them: they are followed here, element by element."""
    stack: list[_Element] = []
    root: _Element | None = None
    pending: dict[str | None, str] = {}
    count = 0
    events = ("start-ns", "start", "end")
    try:
        for event, item in iterparse(io.BytesIO(data), events, forbid_dtd=True):
            if event == "start-ns":
                prefix, uri = item
                pending[prefix or None] = uri
            elif event == "start":
                count += 1
                if count > MAX_ELEMENTS or len(stack) >= MAX_DEPTH:
                    raise MalformedMessage("too many elements or too deep")
                prefixes = stack[-1].prefixes if stack else {}
                if pending:
                    prefixes, pending = {**prefixes, **pending}, {}
                namespace, _, name = (
                    item.tag[1:].rpartition("}") if item.tag[:1] == "{" else ("", "", item.tag)
                )
                element = _Element(namespace, name, dict(item.attrib), prefixes)
                if stack:
                    stack[-1].children.append(element)
                else:
                    root = element
                stack.append(element)
            else:
                stack.pop().text = item.text or ""
    # ValueError: DefusedXmlException among others; LookupError: an unknown encoding.
    except (ValueError, LookupError, ParseError) as error:
        raise MalformedMessage(f"refused: {error}") from None
    if root is None:
        raise MalformedMessage("no document element")
    return root


def _qnames(element: _Element) -> frozenset[tuple[str, str]]:
    names = set()
    for token in element.content().split():
        prefix, colon, local = token.rpartition(":")
        namespace = element.prefixes.get(prefix if colon else None)
        names.add((namespace or "", local))  # an undeclared prefix matches nothing
    return frozenset(names)


def parse_message(data: bytes) -> Probe | Resolve | None:
    """The Probe or Resolve in `data`; None for other WS-Discovery messages (another
    device's Hello, our own looped back). Raises MalformedMessage."""
    root = _parse_xml(data)
    if (root.namespace, root.name) != (SOAP_ENV, "Envelope"):
        raise MalformedMessage("not a SOAP 1.2 envelope")
    header = root.child(SOAP_ENV, "Header")
    body = root.child(SOAP_ENV, "Body")
    if header is None or body is None:
        raise MalformedMessage("no SOAP header or body")
    action_element = header.child(WSA, "Action")
    action = action_element.content() if action_element is not None else ""
    if action not in (ACTION_PROBE, ACTION_RESOLVE):
        return None
    id_element = header.child(WSA, "MessageID")
    message_id = id_element.content() if id_element is not None else ""
    if not message_id or len(message_id) > MAX_MESSAGE_ID:
        raise MalformedMessage("no usable MessageID")
    if action == ACTION_RESOLVE:
        resolve = body.child(WSD, "Resolve")
        reference = resolve.child(WSA, "EndpointReference") if resolve is not None else None
        address = reference.child(WSA, "Address") if reference is not None else None
        if address is None:
            raise MalformedMessage("a Resolve with no endpoint address")
        return Resolve(message_id, address.content())
    probe = body.child(WSD, "Probe")
    if probe is None:
        raise MalformedMessage("a Probe action with no Probe")
    types = probe.child(WSD, "Types")
    scopes = probe.child(WSD, "Scopes")
    match_by = scopes.attributes.get("MatchBy", "").strip() if scopes is not None else ""
    return Probe(
        message_id,
        _qnames(types) if types is not None else frozenset(),
        tuple(scopes.content().split()) if scopes is not None else (),
        match_by or MATCH_RFC2396,
    )


# -- matching ----------------------------------------------------------------------


def _segments(path: str) -> list[str] | None:
    segments = [unquote(s) for s in path.split("/")]
    if "." in segments or ".." in segments:
        return None
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # ".../Profile/" is ".../Profile"
    return segments


def scope_matches(wanted: str, ours: str, match_by: str = MATCH_RFC2396) -> bool:
    """Whether a Probe's scope `wanted` matches our scope `ours` under `match_by`.
    By URI: same scheme and authority (any case), and `wanted`'s path segments a
    prefix of ours (onvif://www.onvif.org/Profile matches .../Profile/Streaming,
    .../Prof does not). Rules other than URI and string comparison match nothing."""
    if match_by in _STRCMP_RULES:
        return wanted == ours
    if match_by not in _URI_RULES:
        return False
    try:
        want, have = urlsplit(wanted), urlsplit(ours)
    except ValueError:
        return False
    if (want.scheme.lower(), want.netloc.lower()) != (have.scheme.lower(), have.netloc.lower()):
        return False
    want_path, have_path = _segments(want.path), _segments(have.path)
    if want_path is None or have_path is None:
        return False
    return have_path[: len(want_path)] == want_path


def probe_matches(identity: DiscoveryIdentity, probe: Probe) -> bool:
    """WS-Discovery's rule: every type asked for is ours, and every scope asked for
    matches one of ours. A Probe that names neither matches."""
    if not probe.types <= OUR_TYPES:
        return False
    return all(
        any(scope_matches(wanted, ours, probe.match_by) for ours in identity.scopes)
        for wanted in probe.scopes
    )


# -- writing messages --------------------------------------------------------------


def _envelope(action: str, headers: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:a="{WSA}" xmlns:d="{WSD}"'
        f' xmlns:dn="{NS_DN}" xmlns:tds="{NS_TDS}">'
        f"<s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>{uuid.uuid4().urn}</a:MessageID>{headers}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _sequence(instance_id: int, number: int) -> str:
    instance, message = quoteattr(str(instance_id)), quoteattr(str(number))
    return f"<d:AppSequence InstanceId={instance} MessageNumber={message}/>"


def _reference(identity: DiscoveryIdentity) -> str:
    address = escape(identity.address)
    return f"<a:EndpointReference><a:Address>{address}</a:Address></a:EndpointReference>"


def _description(identity: DiscoveryIdentity, xaddrs: str) -> str:
    return (
        f"{_reference(identity)}<d:Types>{TYPES_TEXT}</d:Types>"
        f"<d:Scopes>{escape(' '.join(identity.scopes))}</d:Scopes>"
        f"<d:XAddrs>{escape(xaddrs)}</d:XAddrs>"
        f"<d:MetadataVersion>{identity.metadata_version}</d:MetadataVersion>"
    )


def hello_message(identity: DiscoveryIdentity, xaddrs: str, instance_id: int, number: int) -> bytes:
    return _envelope(
        ACTION_HELLO,
        f"<a:To>{TO_DISCOVERY}</a:To>{_sequence(instance_id, number)}",
        f"<d:Hello>{_description(identity, xaddrs)}</d:Hello>",
    )


def bye_message(identity: DiscoveryIdentity, instance_id: int, number: int) -> bytes:
    return _envelope(
        ACTION_BYE,
        f"<a:To>{TO_DISCOVERY}</a:To>{_sequence(instance_id, number)}",
        f"<d:Bye>{_reference(identity)}</d:Bye>",
    )


def match_message(
    request: Probe | Resolve,
    identity: DiscoveryIdentity,
    xaddrs: str,
    instance_id: int,
    number: int,
) -> bytes:
    """ProbeMatches or ResolveMatches answering `request`."""
    if isinstance(request, Probe):
        action, outer, inner = ACTION_PROBE_MATCHES, "ProbeMatches", "ProbeMatch"
    else:
        action, outer, inner = ACTION_RESOLVE_MATCHES, "ResolveMatches", "ResolveMatch"
    return _envelope(
        action,
        f"<a:RelatesTo>{escape(request.message_id)}</a:RelatesTo>"
        f"<a:To>{TO_ANONYMOUS}</a:To>{_sequence(instance_id, number)}",
        f"<d:{outer}><d:{inner}>{_description(identity, xaddrs)}</d:{inner}></d:{outer}>",
    )
