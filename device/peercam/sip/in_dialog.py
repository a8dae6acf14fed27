"""What a call (made or taken) answers to the phone's requests inside it, beside the
BYE its owner acts on: SIP INFO key presses, OPTIONS and UPDATE keep-alives, and a
session refresh (RFC 4028's re-INVITE)."""

from __future__ import annotations

from collections.abc import Callable

from peercam.sip.dtmf import KEYS
from peercam.sip.message import Request, Response, response_to

# What a call handles; anything else is answered 501 with this list.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


# A new offer in the call (a PBX moving the media, a hold): peercam's answer to it, or
# None when it cannot take it (the call then goes on as it was).
OfferHandler = Callable[[bytes], bytes | None]


class LocalSession:
    """peercam's side of a call's offer/answer: the SDP last agreed, and whom to ask
    about a new offer. A later offerless re-INVITE is offered what was last agreed
    (RFC 3264 §8); without an owner to ask, the session goes on as it was."""

    def __init__(self, sdp: bytes, on_offer: OfferHandler | None) -> None:
        self.sdp = sdp
        self._on_offer = on_offer

    def take_offer(self, body: bytes) -> bytes | None:
        if self._on_offer is None:
            return self.sdp
        answered = self._on_offer(body)
        if answered is not None:
            self.sdp = answered
        return answered


def answer(
    message: Request, established: bool, local_sdp: bytes, contact: str,
    on_key: Callable[[str], None] | None, on_offer: OfferHandler | None = None,
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
        body = local_sdp
        if message.body and on_offer is not None:
            # A new offer: Asterisk moving the audio straight to the phone
            # (direct_media), a hold; answered as RFC 3264 §8 says.
            answered = on_offer(message.body)
            if answered is None:
                return response_to(message, 488, "Not Acceptable Here")
            body = answered
        # Without a body: a session refresh; peercam's SDP stands, unchanged.
        ok = _with_allow(response_to(message, 200, "OK"))
        ok.headers.add("Contact", contact)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
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
