"""One outgoing call (RFC 3261 §13, §17.1.1, §9, §15): INVITE with peercam's audio
offer, ringing, answered or refused, cancelled, hung up by either side. The call's
states are told through a callback, typed; media is the owner's (it gets the phone's
SDP when answered)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from peercam.sip import digest, in_dialog, routes
from peercam.sip.message import (
    Address,
    CSeq,
    Request,
    Response,
    SipError,
    SipUri,
    Via,
)
from peercam.sip.transaction import T1, end_task, new_branch, request
from peercam.sip.transport import Endpoint, Target, reply_target

logger = logging.getLogger(__name__)


class CallState(enum.Enum):
    CALLING = "calling"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"  # hung up by either side, cancelled, refused or failed


@dataclass(frozen=True)
class CallEvent:
    state: CallState
    reason: str = ""  # why it ended, or the status that rang
    remote_sdp: bytes = b""  # the phone's answer, when answered


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


class OutgoingCall:
    """`uri` is called through `proxy` (the registrar, or the phone itself)."""

    def __init__(
        self, endpoint: Endpoint, uri: str, proxy: Target, caller: Address, local_sdp: bytes,
        on_event: Callable[[CallEvent], None], credentials: Credentials | None = None,
        t1: float = T1, on_key: Callable[[str], None] | None = None,
        on_offer: in_dialog.OfferHandler | None = None,
    ) -> None:  # fmt: skip
        self._endpoint = endpoint
        self.uri = uri
        self._proxy = proxy
        self._from = caller.with_param("tag", secrets.token_hex(6))
        self._local = in_dialog.LocalSession(local_sdp, on_offer)
        self._on_event = on_event
        self._on_key = on_key  # a key pressed, told by SIP INFO
        self._credentials = credentials
        # The header answering the one challenge answered (none is answered twice).
        self._authorization: tuple[str, str] | None = None
        self._t1 = t1
        self.call_id = secrets.token_hex(12)
        self._cseq = 0
        self._invite: Request | None = None
        self._branch = ""
        self._branches: list[str] = []  # every INVITE's, a challenged one's too
        self._remote_tag: str | None = None
        self._remote_target: Target | None = None
        self._remote_uri = uri
        self._routes: list[str] = []  # the dialog's route set, once answered
        self.state = CallState.CALLING
        self._task: asyncio.Task[None] | None = None
        self._cancel_asked = False
        self._provisional = asyncio.Event()
        self._final = asyncio.Event()  # the INVITE's final response came (or none will)
        self._ended = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sip-call-{self.call_id[:6]}")

    def _emit(self, event: CallEvent) -> None:
        if self.state == CallState.ENDED:
            return
        self.state = event.state
        if event.state == CallState.ENDED:
            self._ended.set()
        self._on_event(event)

    async def _run(self) -> None:
        try:
            await self._invite_until_final()
        except (TimeoutError, OSError, SipError) as error:
            reason = "no answer" if isinstance(error, TimeoutError) else str(error)
            logger.info("SIP call to %s failed: %s", self.uri, reason)
            self._emit(CallEvent(CallState.ENDED, reason))
        finally:
            self._final.set()

    async def _invite_until_final(self) -> None:
        await self._endpoint.connect(self._proxy)  # a TCP connection's port goes in the Via
        for _ in range(2):  # once more with credentials when challenged
            response = await self._transaction(self._new_invite())
            if response.status in (401, 407) and self._credentials and not self._authorization:
                self._authorization = digest.answer(
                    response, digest.challenge_in(response), self._credentials.user,
                    self._credentials.password, "INVITE", self.uri,
                )  # fmt: skip
                continue
            break
        if 200 <= response.status < 300:
            await self._confirm(response)
            if self._cancel_asked:
                # The answer crossed our CANCEL (§9.1): the call exists; end it at once.
                await self.hang_up()
            return
        reason = f"{response.status} {response.reason}"
        if response.status == 487:
            reason = "cancelled"
        self._emit(CallEvent(CallState.ENDED, reason))

    def _new_invite(self) -> Request:
        if self._cancel_asked:
            raise SipError("cancelled")  # before anything was sent
        self._cseq += 1
        host, port = self._endpoint.local_address(self._proxy)
        invite = Request("INVITE", self.uri)
        self._branch = new_branch()
        via = Via(self._proxy.transport, host, port, (("branch", self._branch), ("rport", "")))
        for name, value in (
            ("Via", str(via)), ("Max-Forwards", "70"), ("From", str(self._from)),
            ("To", f"<{self.uri}>"), ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} INVITE"),
            ("Contact", self._contact()), ("Allow", in_dialog.ALLOW), ("User-Agent", "peercam"),
            ("Content-Type", "application/sdp"),
        ):  # fmt: skip
            invite.headers.add(name, value)
        if self._authorization is not None:
            invite.headers.add(*self._authorization)
        invite.body = self._local.sdp
        self._invite = invite
        return invite

    def _contact(self) -> str:
        host, port = self._endpoint.local_address(self._proxy)
        return f"<sip:peercam@{host}:{port};transport={self._proxy.transport.lower()}>"

    async def _transaction(self, invite: Request) -> Response:
        """§17.1.1: INVITE resent at T1, 2T1, ... until any response (Timer A); no
        response within 64 T1 is a timeout (Timer B); a final non-2xx is ACKed here."""
        final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._provisional.clear()

        def on_response(response: Response) -> None:
            if response.status < 200:
                self._provisional.set()
                if self._remote_tag is None and response.status in (180, 183):
                    self._emit(CallEvent(CallState.RINGING, f"{response.status} {response.reason}"))
            elif not final.done():
                final.set_result(response)
            elif response.status >= 300:
                # The refusal again: our ACK was lost (§17.1.1.2, Timer D's time).
                self._endpoint.send_soon(self._non_2xx_ack(invite, response), self._proxy)
            elif self._remote_tag is not None:
                self._another_2xx(response)

        branch = self._branch
        self._branches.append(branch)  # heard until close: retransmissions are answered
        self._endpoint.wait_for(branch, "INVITE", on_response)
        await self._endpoint.send(invite, self._proxy)
        interval = self._t1
        async with asyncio.timeout(64 * self._t1):
            while not self._provisional.is_set() and not final.done():
                done, _ = await asyncio.wait({final}, timeout=interval)
                if done or self._provisional.is_set():
                    break
                if self._proxy.transport == "UDP":
                    await self._endpoint.send(invite, self._proxy)
                interval *= 2
        response = await final
        if response.status >= 300:
            await self._endpoint.send(self._non_2xx_ack(invite, response), self._proxy)
        return response

    def _another_2xx(self, response: Response) -> None:
        """A 2xx after the first: the same answer again (our ACK was lost: ACKed
        again, §13.2.2.4), or another phone's answer forked by the PBX (a ring group,
        §13.2.2.4: its dialog is confirmed with an ACK and ended at once with a BYE;
        the call goes on with the first)."""
        try:
            tag = Address.parse(response.headers.require("To")).tag
        except SipError:
            return
        if tag == self._remote_tag:
            self._endpoint.send_soon(self._ack(response), self._remote_target or self._proxy)
            return
        logger.info("SIP: a second phone answered the call to %s; ending its leg", self.uri)
        contact = response.headers.get("Contact")
        uri = Address.parse(contact).uri if contact else self.uri
        number = CSeq.parse(response.headers.require("CSeq")).number
        for method, cseq in (("ACK", number), ("BYE", number + 1)):
            message = self._in_dialog(method, cseq, tag=tag, uri=uri, routes=False)
            self._endpoint.send_soon(message, self._proxy)

    def _non_2xx_ack(self, invite: Request, response: Response) -> Request:
        """§17.1.1.3: the ACK of a refusal, in the INVITE's transaction."""
        ack = Request("ACK", invite.uri)
        ack.headers.add("Via", invite.headers.get_all("Via")[0])
        for name in ("From", "Call-ID", "Route"):
            for value in invite.headers.get_all(name):
                ack.headers.add(name, value)
        ack.headers.add("To", response.headers.require("To"))
        ack.headers.add("CSeq", f"{CSeq.parse(invite.headers.require('CSeq')).number} ACK")
        ack.headers.add("Max-Forwards", "70")
        return ack

    async def _confirm(self, response: Response) -> None:
        to = Address.parse(response.headers.require("To"))
        self._remote_tag = to.tag
        contact = response.headers.get("Contact")
        if contact is not None:
            self._remote_uri = Address.parse(contact).uri
        # No Record-Route in the answer (none is asked for): in-dialog requests go to
        # the phone's own address, its Contact (§12.2.1.1).
        self._routes = routes.from_record_route(
            response.headers.get_all("Record-Route"), caller_side=True
        )
        remote = SipUri.parse(self._remote_uri)
        transport = (remote.transport or self._proxy.transport).upper()
        if self._routes:
            # Proxies that asked to stay in the path (§12.2.1.1): through the first.
            self._remote_target = routes.first_hop(self._routes, self._proxy)
        elif (
            routes.is_address(remote.host)
            and transport == self._proxy.transport
            and transport != "TLS"  # its certificate would be checked against an address
        ):
            self._remote_target = Target(transport, remote.host, remote.port or 5060)
        else:
            # A name (looked up here it would block the loop) or another transport:
            # the proxy routes the dialog's requests by their Request-URI instead.
            self._remote_target = self._proxy
        await self._send_ack(response)
        self._emit(CallEvent(CallState.ANSWERED, "", response.body))

    async def _send_ack(self, response: Response) -> None:
        await self._endpoint.send(self._ack(response), self._remote_target or self._proxy)

    def _ack(self, response: Response) -> Request:
        return self._in_dialog("ACK", CSeq.parse(response.headers.require("CSeq")).number)

    def _in_dialog(
        self, method: str, number: int, tag: str | None = None, uri: str | None = None,
        routes: bool = True,
    ) -> Request:  # fmt: skip
        """A request in the call's dialog (or, given `tag` and `uri`, in a forked
        answer's, sent through the proxy)."""
        host, port = self._endpoint.local_address(self._proxy)
        message = Request(method, uri or self._remote_uri)
        via = Via(self._proxy.transport, host, port, (("branch", new_branch()), ("rport", "")))
        remote_tag = tag or self._remote_tag
        to = (
            Address(self.uri)
            if remote_tag is None
            else Address(self.uri).with_param("tag", remote_tag)
        )
        for name, value in (
            ("Via", str(via)), ("Max-Forwards", "70"), ("From", str(self._from)),
            ("To", str(to)), ("Call-ID", self.call_id), ("CSeq", f"{number} {method}"),
        ):  # fmt: skip
            message.headers.add(name, value)
        for route in self._routes if routes else []:
            message.headers.add("Route", route)
        return message

    async def cancel(self) -> None:
        """Stop a call not yet answered. §9.1: CANCEL only once the phone sent a 1xx;
        before that, as soon as one comes, and not at all if a final response comes
        first (an answer is then hung up at once). Returns once the call ended, or the
        phone never confirmed it within 64 T1 (it is then taken as ended)."""
        if self.state not in (CallState.CALLING, CallState.RINGING):
            return
        if self._cancel_asked:
            # Asked before (a ring's time ran out, then the ring was missed): one CANCEL
            # transaction is enough; wait for its outcome.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(64 * self._t1):
                    await self._ended.wait()
            return
        self._cancel_asked = True
        if self._invite is None:
            return  # _new_invite will not send it
        waits = {asyncio.ensure_future(e.wait()) for e in (self._provisional, self._final)}
        try:
            await asyncio.wait(waits, timeout=64 * self._t1, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self._provisional.is_set() and not self._final.is_set():
            await self._send_cancel(self._invite)
        try:
            async with asyncio.timeout(64 * self._t1):
                await self._ended.wait()
        except TimeoutError:
            logger.info("SIP: the call to %s, cancelled, never ended; taken as ended", self.uri)
            self._emit(CallEvent(CallState.ENDED, "cancelled"))
            if self._task is not None:
                self._task.cancel()

    async def _send_cancel(self, invite: Request) -> None:
        cancel = Request("CANCEL", invite.uri)
        for name in ("From", "To", "Call-ID", "Route", "Max-Forwards"):
            for value in invite.headers.get_all(name):
                cancel.headers.add(name, value)
        cancel.headers.add("CSeq", f"{CSeq.parse(invite.headers.require('CSeq')).number} CANCEL")
        # A transaction of its own, on the INVITE's branch (§9.1); the INVITE's 487
        # then ends the call.
        try:
            await request(self._endpoint, cancel, self._proxy, self._t1, self._branch)
        except (TimeoutError, OSError, SipError) as error:
            logger.info("SIP: CANCEL of the call to %s: %s", self.uri, error)

    async def hang_up(self) -> None:
        """End the call: BYE when answered, CANCEL while ringing."""
        if self.state == CallState.ANSWERED:
            self._emit(CallEvent(CallState.ENDED, "hung up"))
            try:
                self._cseq += 1
                bye = self._in_dialog("BYE", self._cseq)
                await request(self._endpoint, bye, self._remote_target or self._proxy, self._t1)
            except (TimeoutError, OSError, SipError) as error:
                logger.info("SIP: BYE to %s: %s", self.uri, error)
        else:
            await self.cancel()

    def handle_request(self, message: Request, source: Target) -> bool:
        """A request in this call's dialog (same Call-ID): True if it was this call's."""
        if message.headers.get("Call-ID") != self.call_id:
            return False
        answer = self._answer_in_dialog(message)
        if answer is not None:
            self._endpoint.send_soon(answer, reply_target(message, source))
        return True

    def _answer_in_dialog(self, message: Request) -> Response | None:
        if message.method == "BYE":
            self._emit(CallEvent(CallState.ENDED, "hung up by the phone"))
        return in_dialog.answer(
            message,
            self.state == CallState.ANSWERED,
            self._local.sdp,
            self._contact(),
            self._on_key,
            self._local.take_offer,
        )

    @property
    def cancel_asked(self) -> bool:
        """Whether it is being (or was) cancelled: an answer now is hung up at once."""
        return self._cancel_asked

    async def close(self) -> None:
        # Ended with its task still running: it is sending the BYE of an answer that
        # crossed the CANCEL.
        await end_task(self._task, self.state == CallState.ENDED, self._t1)
        for branch in self._branches:
            self._endpoint.stop_waiting(branch, "INVITE")
