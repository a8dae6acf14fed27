"""SOAP 1.2 as ONVIF clients speak it: a request's operation and WS-Security header
read from a bounded body (defusedxml: no DTDs, no entity expansion), and responses
and faults written as text with every prefix declared once on the envelope.

Responses are composed from `element()`/`text()` strings rather than a tree: ONVIF's
schemas fix element order, and clients built on generated bindings (zeep, gSOAP)
read a sequence in that order, so the order written is the order in the schema."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

MAX_REQUEST = 64 * 1024  # bytes; the largest ONVIF request a camera needs is a few KiB

ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TR2 = "http://www.onvif.org/ver20/media/wsdl"
TEV = "http://www.onvif.org/ver10/events/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"

PREFIXES = {
    "env": ENV,
    "tt": TT,
    "tds": TDS,
    "trt": TRT,
    "tr2": TR2,
    "tev": TEV,
    "wsnt": WSNT,
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "xs": "http://www.w3.org/2001/XMLSchema",
}


class SoapFault(Exception):
    """A request answered with a SOAP fault. `subcode` is ONVIF's (ter:...)."""

    def __init__(self, status: int, code: str, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code  # "Sender" (the client's fault) or "Receiver" (ours)
        self.subcode = subcode
        self.reason = reason


def not_authorized(reason: str = "Sender not authorized") -> SoapFault:
    return SoapFault(400, "Sender", "ter:NotAuthorized", reason)


def bad_argument(reason: str) -> SoapFault:
    return SoapFault(400, "Sender", "ter:InvalidArgVal", reason)


def action_not_supported(operation: str) -> SoapFault:
    # ONVIF Core §5.11.2.4's wording, which clients match (Home Assistant looks for
    # "not implemented" before it gives up on an optional call).
    return SoapFault(
        500, "Receiver", "ter:ActionNotSupported", f"Optional Action Not Implemented: {operation}"
    )


@dataclass(frozen=True)
class SoapRequest:
    namespace: str  # of the operation element
    operation: str  # its local name: "GetProfiles"
    body: Element  # the operation element
    security: Element | None  # wsse:Security from the header, if any

    def find_text(self, *path: str) -> str | None:
        """The text of the first descendant by local names, whatever their namespace
        (clients qualify request children inconsistently)."""
        node: Element | None = self.body
        for name in path:
            node = _child(node, name) if node is not None else None
        return node.text.strip() if node is not None and node.text else None

    def find_all_text(self, name: str) -> list[str]:
        """The texts of the operation's children of this local name (a list argument:
        Media2's GetProfiles takes Type once per kind of configuration)."""
        return [
            child.text.strip()
            for child in self.body
            if (child.tag == name or child.tag.endswith("}" + name)) and child.text
        ]


def parse_request(data: bytes) -> SoapRequest:
    if len(data) > MAX_REQUEST:
        raise SoapFault(413, "Sender", "ter:InvalidArgs", "request too large")
    try:
        root = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as error:
        raise SoapFault(400, "Sender", "ter:WellFormed", f"not well-formed XML: {error}") from None
    if root.tag == f"{{{SOAP11_ENV}}}Envelope":
        raise SoapFault(400, "VersionMismatch", "", "SOAP 1.2 only, as ONVIF specifies")
    if root.tag != f"{{{ENV}}}Envelope":
        raise SoapFault(400, "Sender", "ter:WellFormed", "not a SOAP envelope")
    body = root.find(f"{{{ENV}}}Body")
    if body is None or len(body) == 0:
        raise SoapFault(400, "Sender", "ter:WellFormed", "an envelope without an operation")
    operation = body[0]
    namespace, _, name = operation.tag[1:].partition("}") if "}" in operation.tag else ("", "", "")
    if not name:
        raise SoapFault(400, "Sender", "ter:WellFormed", "an operation without a namespace")
    security = root.find(f"{{{ENV}}}Header/{{{WSSE}}}Security")
    return SoapRequest(namespace, name, operation, security)


def _child(node: Element, name: str) -> Element | None:
    for child in node:
        if child.tag == name or child.tag.endswith("}" + name):
            return child
    return None


# -- writing --------------------------------------------------------------------------


def escape(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def attributes(**values: object) -> str:
    return "".join(f' {name.rstrip("_")}="{escape(value)}"' for name, value in values.items())


def element(name: str, *content: str, **attrs: object) -> str:
    inner = "".join(content)
    if not inner:
        return f"<{name}{attributes(**attrs)}/>"
    return f"<{name}{attributes(**attrs)}>{inner}</{name}>"


def text(name: str, value: object, **attrs: object) -> str:
    return f"<{name}{attributes(**attrs)}>{escape(value)}</{name}>"


def xml_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(body: str, header: str = "") -> bytes:
    declarations = "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in PREFIXES.items())
    head = f"<env:Header>{header}</env:Header>" if header else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope{declarations}>'
        f"{head}<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def fault_envelope(fault: SoapFault) -> bytes:
    subcode = element("env:Subcode", text("env:Value", fault.subcode)) if fault.subcode else ""
    body = element(
        "env:Fault",
        element("env:Code", text("env:Value", f"env:{fault.code}"), subcode),
        element("env:Reason", text("env:Text", fault.reason, **{"xml:lang": "en"})),
    )
    return envelope(body)
