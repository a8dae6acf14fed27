"""What a call (made or taken) answers to the phone's requests inside it, beside the
BYE its owner acts on: SIP INFO key presses, OPTIONS and UPDATE keep-alives, and a
session refresh (RFC 4028's re-INVITE)."""

from __future__ import annotations

from collections.abc import Callable

from peercam.sip.dtmf import KEYS
from peercam.sip.message import Request, Response, response_to

# What a call handles; anything else is answered 501 with this list.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


def answer(
    message: Request, established: bool, local_sdp: bytes, contact: str,
    on_key: Callable[[str], None] | None,
) -> Response | None:  # fmt: skip
    """The response to `message`, a request in the call's dialog (None for an ACK)."""
    if message.method == "ACK":
        return None
    if message.method == "BYE":
        return response_to(message, 200, "OK")
    if message.method == "INFO":
        return _info(message, on_key)
    if message.method in ("OPTIONS", "UPDATE") and not message.body:
        return _with_allow(response_to(message, 200, "OK"))
    if message.method == "INVITE" and established:
        # A session refresh, or a retransmitted one: the same session goes on;
        # peercam's SDP stands (RFC 3264 §8: unchanged, so the same version).
        ok = _with_allow(response_to(message, 200, "OK"))
        ok.headers.add("Contact", contact)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = local_sdp
        return ok
    return _with_allow(response_to(message, 501, "Not Implemented"))


def _info(message: Request, on_key: Callable[[str], None] | None) -> Response:
    """SIP INFO key presses, for phones that send no RFC 4733 events: the common
    `application/dtmf-relay` (Signal=5) and `application/dtmf` (5) bodies."""
    kind = (message.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = message.body.decode("utf-8", "replace")
    if kind == "application/dtmf-relay":
        signal = next(
            (line.split("=", 1)[1].strip() for line in text.splitlines()
             if "=" in line and line.split("=", 1)[0].strip().lower() == "signal"),
            "",
        )  # fmt: skip
    elif kind == "application/dtmf":
        signal = text.strip()
    else:
        return response_to(message, 415, "Unsupported Media Type")
    if len(signal) == 1 and signal.upper() in KEYS and on_key is not None:
        on_key(signal.upper())
    return response_to(message, 200, "OK")


def _with_allow(response: Response) -> Response:
    response.headers.add("Allow", ALLOW)
    return response
