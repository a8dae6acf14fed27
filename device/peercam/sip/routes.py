"""A dialog's route set (RFC 3261 §12.1, §16.12): the proxies that asked, with
Record-Route, to stay in the path of its later requests. Those requests carry the set
as Route headers and go to its first proxy; peercam takes every proxy as a loose
router (`;lr`, what proxies of this century are)."""

from __future__ import annotations

import ipaddress

from peercam.sip.message import Address, SipError, SipUri
from peercam.sip.transport import Target


def from_record_route(values: list[str], caller_side: bool) -> list[str]:
    """The route set of a dialog from the Record-Route values of its first request
    (the side that was called keeps their order) or of the answer to it (the caller
    reverses them)."""
    routes = [value for value in values if value.strip()]
    return list(reversed(routes)) if caller_side else routes


def first_hop(routes: list[str], fallback: Target) -> Target:
    """Where the dialog's requests go: the first proxy of the set, if it names an
    address peercam can send to without a lookup; else `fallback`."""
    if not routes or fallback.transport == "TLS":
        # Over TLS the dialog stays on the connection peercam opened and checked (the
        # proxy's, by its configured name): a hop's address has no name to check.
        return fallback
    try:
        uri = SipUri.parse(Address.parse(routes[0]).uri)
    except SipError:
        return fallback
    if not is_address(uri.host):
        return fallback  # a name: looking it up here would block; the fallback routes it
    transport = (uri.transport or fallback.transport).upper()
    return Target(transport, uri.host.strip("[]"), uri.port or 5060)


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
