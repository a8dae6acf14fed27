"""One call a phone makes to the door (RFC 3261 §13.3, §17.2.1, §12.1.1): answered at
once with peercam's SDP, the 200 resent until the phone's ACK (given up after 64 T1,
and the call then ended with a BYE), hung up by either side. Whether to take it is
the owner's decision, made before it is built; states are told through a callback,
typed, as an outgoing call's are."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from peercam.sip import in_dialog, routes
from peercam.sip.call import CallEvent, CallState
from peercam.sip.message import Address, CSeq, Request, Response, SipError, Via, response_to
from peercam.sip.transaction import T1, T2, end_task, new_branch, request
from peercam.sip.transport import Endpoint, Target, reply_target

logger = logging.getLogger(__name__)


class IncomingCall:
    def __init__(
        self, endpoint: Endpoint, invite: Request, source: Target,
        on_event: Callable[[CallEvent], None], on_key: Callable[[str], None] | None = None,
        on_offer: in_dialog.OfferHandler | None = None,
        t1: float = T1,
    ) -> None:  # fmt: skip
        self._endpoint = endpoint
        self._invite = invite
        self._source = source  # the phone, or the PBX relaying it: in-dialog requests go back
        self._on_event = on_event
        self._on_key = on_key
        self._t1 = t1
        self.call_id = invite.headers.require("Call-ID")
        self._branch = Via.parse(invite.headers.require("Via")).branch
        self._tag = secrets.token_hex(6)
        self.caller = Address.parse(invite.headers.require("From"))
        self._cseq = 0
        self._local = in_dialog.LocalSession(b"", on_offer)
        self._final: Response | None = None
        self._acked = asyncio.Event()
        self._sending_bye = False  # its task may be sending the BYE: let it finish
        self._task: asyncio.Task[None] | None = None
        self.state = CallState.CALLING
        # §17.2.1: a 100 at once, so the phone stops resending while the owner decides
        # (and may CANCEL, which §9.1 allows only once a 1xx came).
        self._trying = response_to(invite, 100, "Trying")
        endpoint.send_soon(self._trying, reply_target(invite, source))

    def _emit(self, event: CallEvent) -> None:
        if self.state == CallState.ENDED:
            return
        self.state = event.state
        self._on_event(event)

    def refuse(self, status: int, reason: str) -> None:
        """Say no (403 not allowed, 486 busy, 488 no common codec)."""
        self._final = response_to(self._invite, status, reason, to_tag=self._tag)
        self._task = asyncio.create_task(self._until_acked(self._final), name="sip-refuse")
        self._emit(CallEvent(CallState.ENDED, f"{status} {reason}"))

    def accept(self, local_sdp: bytes) -> bool:
        """Answer with `local_sdp`; ANSWERED is told once the phone ACKs. False if the
        phone cancelled meanwhile (nothing is sent)."""
        if self.state == CallState.ENDED:
            return False
        self._local.sdp = local_sdp
        ok = response_to(self._invite, 200, "OK", to_tag=self._tag)
        # §12.1.1: the proxies that record-routed see the answer with their entries.
        for value in self._invite.headers.get_all("Record-Route"):
            ok.headers.add("Record-Route", value)
        ok.headers.add("Contact", self._contact())
        ok.headers.add("Allow", in_dialog.ALLOW)
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = local_sdp
        self._final = ok
        self._task = asyncio.create_task(self._until_acked(ok), name="sip-answer")
        return True

    def _contact(self) -> str:
        host, port = self._endpoint.local_address(self._source)
        return f"<sip:peercam@{host}:{port};transport={self._source.transport.lower()}>"

    async def _until_acked(self, final: Response) -> None:
        """The final response again at T1, 2T1, ... up to T2, until the ACK (§13.3.1.4
        for a 200, Timer G for a refusal, §17.2.1). A 200 never ACKed within 64 T1
        ends the call; a refusal is then simply done."""
        ok = final
        target = reply_target(self._invite, self._source)
        await self._endpoint.send(ok, target)
        interval = self._t1
        try:
            async with asyncio.timeout(64 * self._t1):
                while not self._acked.is_set():
                    try:
                        await asyncio.wait_for(self._acked.wait(), interval)
                    except TimeoutError:
                        if self._source.transport == "UDP":
                            await self._endpoint.send(ok, target)
                        interval = min(2 * interval, T2)
        except TimeoutError:
            if ok.status == 200:
                logger.info("SIP: %s never confirmed the answer; ending the call", self.caller.uri)
                await self.hang_up()
            return
        if ok.status == 200:
            self._emit(CallEvent(CallState.ANSWERED, "", self._invite.body))

    def handle_request(self, message: Request, source: Target) -> bool:
        """A request of this call (same Call-ID): True if it was this call's."""
        if message.headers.get("Call-ID") != self.call_id:
            return False
        answer: Response | None
        if message.method == "INVITE" and self._is_first_invite(message):
            answer = self._final or self._trying  # a retransmission: the same answer again
        elif message.method == "CANCEL":
            answer = response_to(message, 200, "OK", to_tag=self._tag)
            if self._final is None:
                # Not answered yet (the owner was still taking the floor): §9.2, the
                # INVITE is answered 487 and the call ends.
                self._final = response_to(self._invite, 487, "Request Terminated", self._tag)
                self._task = asyncio.create_task(
                    self._until_acked(self._final), name="sip-terminated"
                )
                self._emit(CallEvent(CallState.ENDED, "cancelled by the phone"))
        elif message.method == "ACK":
            self._acked.set()
            answer = None
        else:
            if message.method == "BYE":
                self._emit(CallEvent(CallState.ENDED, "hung up by the phone"))
            answer = in_dialog.answer(
                message,
                self.state == CallState.ANSWERED,
                self._local.sdp,
                self._contact(),
                self._on_key,
                self._local.take_offer,
            )
        if answer is not None:
            self._endpoint.send_soon(answer, reply_target(message, source))
        return True

    def _is_first_invite(self, message: Request) -> bool:
        try:
            branch = Via.parse(message.headers.require("Via")).branch
            return (
                branch == self._branch and Address.parse(message.headers.require("To")).tag is None
            )
        except SipError:
            return False

    async def hang_up(self) -> None:
        if self.state == CallState.ENDED or self._final is None or self._final.status != 200:
            return
        self._emit(CallEvent(CallState.ENDED, "hung up"))
        self._sending_bye = True
        try:
            bye, target = self._bye()
            await request(self._endpoint, bye, target, self._t1, new_branch())
        except (TimeoutError, OSError, SipError) as error:
            logger.info("SIP: BYE to %s: %s", self.caller.uri, error)

    def _bye(self) -> tuple[Request, Target]:
        self._cseq = CSeq.parse(self._invite.headers.require("CSeq")).number + 1
        bye = Request("BYE", self._remote_target_uri())
        ours = Address.parse(self._invite.headers.require("To")).with_param("tag", self._tag)
        for name, value in (
            ("Max-Forwards", "70"), ("From", str(ours)), ("To", str(self.caller)),
            ("Call-ID", self.call_id), ("CSeq", f"{self._cseq} BYE"),
        ):  # fmt: skip
            bye.headers.add(name, value)
        dialog_routes = routes.from_record_route(
            self._invite.headers.get_all("Record-Route"), caller_side=False
        )
        for route in dialog_routes:
            bye.headers.add("Route", route)
        return bye, routes.first_hop(dialog_routes, self._source)

    def _remote_target_uri(self) -> str:
        contact = self._invite.headers.get("Contact")
        return Address.parse(contact).uri if contact else self.caller.uri

    async def close(self) -> None:
        # Ended with its task still running: it is sending the BYE of an answer never
        # ACKed.
        await end_task(self._task, self._sending_bye, self._t1)
