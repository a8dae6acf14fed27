"""The call's edges that a real phone does not show on demand, against a scripted peer
on loopback: a CANCEL before any 1xx, an answer crossing the CANCEL (RFC 3261 §9.1:
the call exists and is hung up), a phone that says nothing at all, and the requests a
phone sends in a call (SIP INFO key presses, OPTIONS, a session refresh)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from peercam.sip.call import CallEvent, CallState, OutgoingCall
from peercam.sip.incoming_call import IncomingCall
from peercam.sip.message import Address, Request, Response, parse, response_to
from peercam.sip.transport import Endpoint, Target
from tests.sip_states import StateLog

T1 = 0.05
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


class ScriptedPhone(asyncio.DatagramProtocol):
    """Records what it is sent; `on_request` answers (or not) as a test scripts."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.on_request: Callable[[Request], list[Response]] = lambda request: []
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is not a subclass of asyncio's: a cast, not an isinstance.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        message = parse(data)
        if isinstance(message, Response):
            self.responses.append(message)
        else:
            self.requests.append(message)
            for answer in self.on_request(message):
                self.send(answer)
        self.changed.set()

    def send(self, message: Request | Response) -> None:
        assert self.transport is not None and self.peer is not None
        self.transport.sendto(message.to_bytes(), self.peer)

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def answered(invite: Request, status: int, reason: str) -> Response:
    response = response_to(invite, status, reason, to_tag="phone1")
    if status == 200:
        response.headers.add("Contact", f"<{invite.uri}>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = SDP
    return response


@asynccontextmanager
async def call_to_phone(
    keys: list[str] | None = None,
) -> AsyncIterator[tuple[OutgoingCall, StateLog[CallEvent], ScriptedPhone]]:
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(
        ScriptedPhone, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    events: StateLog[CallEvent] = StateLog()
    calls: list[OutgoingCall] = []

    def on_request(message: Request, source: Target) -> None:
        for call in calls:
            call.handle_request(message, source)

    endpoint = Endpoint(on_request)
    await endpoint.open("127.0.0.1")
    call = OutgoingCall(
        endpoint, f"sip:hall@127.0.0.1:{port}", Target("UDP", "127.0.0.1", port),
        Address("sip:door@127.0.0.1"), SDP, events.add, t1=T1,
        on_key=(keys.append if keys is not None else None),
    )  # fmt: skip
    calls.append(call)
    try:
        yield call, events, phone
    finally:
        await call.close()
        await endpoint.close()
        transport.close()


async def test_a_cancel_before_any_1xx_waits_for_it_and_a_refusal_ends_the_call() -> None:
    async with call_to_phone() as (call, events, phone):
        call.start()
        await phone.until(lambda: "INVITE" in phone.methods())
        cancelling = asyncio.create_task(call.cancel())
        await asyncio.sleep(0.2)
        assert not cancelling.done()  # no CANCEL before a 1xx (§9.1)
        invite = phone.requests[0]
        phone.on_request = lambda request: []
        phone.send(answered(invite, 486, "Busy Here"))
        async with asyncio.timeout(5):
            await cancelling
        assert events[-1].state == CallState.ENDED and events[-1].reason == "486 Busy Here"
        assert "CANCEL" not in phone.methods()  # a final came first: nothing to cancel
        await phone.until(lambda: "ACK" in phone.methods())  # the refusal was ACKed


async def test_an_answer_crossing_the_cancel_is_acked_and_hung_up() -> None:
    async with call_to_phone() as (call, events, phone):

        def script(request: Request) -> list[Response]:
            if request.method == "INVITE":
                return [answered(request, 180, "Ringing")]
            if request.method == "CANCEL":
                # The phone was answered just before the CANCEL came: its 200 for the
                # INVITE is already on its way; the CANCEL itself is answered 200.
                return [answered(phone.requests[0], 200, "OK"), response_to(request, 200, "OK")]
            if request.method == "BYE":
                return [response_to(request, 200, "OK")]
            return []

        phone.on_request = script
        call.start()
        async with asyncio.timeout(5):
            await events.reach(CallState.RINGING)
            await call.cancel()
        await phone.until(lambda: "BYE" in phone.methods())
        assert phone.methods().index("ACK") < phone.methods().index("BYE")
        assert events[-1].state == CallState.ENDED


async def test_a_phone_that_says_nothing_is_given_up_in_bounded_time() -> None:
    async with call_to_phone() as (call, events, phone):
        call.start()
        await phone.until(lambda: "INVITE" in phone.methods())
        async with asyncio.timeout(64 * T1 * 3):
            await call.cancel()
        assert events[-1].state == CallState.ENDED
        assert "CANCEL" not in phone.methods()


async def test_requests_in_the_call_key_presses_by_info_options_and_a_refresh() -> None:
    keys: list[str] = []
    async with call_to_phone(keys) as (call, events, phone):
        phone.on_request = lambda r: [answered(r, 200, "OK")] if r.method == "INVITE" else []
        call.start()
        async with asyncio.timeout(5):
            await events.reach(CallState.ANSWERED)
        await phone.until(lambda: "ACK" in phone.methods())
        invite = phone.requests[0]

        def in_dialog(method: str, number: int, kind: str = "", body: bytes = b"") -> Request:
            request = Request(method, "sip:door@127.0.0.1")
            request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bK{number}x")
            request.headers.add("From", invite.headers.require("To") + ";tag=phone1")
            request.headers.add("To", invite.headers.require("From"))
            request.headers.add("Call-ID", invite.headers.require("Call-ID"))
            request.headers.add("CSeq", f"{number} {method}")
            if kind:
                request.headers.add("Content-Type", kind)
            request.body = body
            return request

        asked = [
            in_dialog("INFO", 1, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            in_dialog("INFO", 2, "application/dtmf", b"#"),
            in_dialog("INFO", 3, "text/plain", b"hello"),
            in_dialog("OPTIONS", 4),
            in_dialog("INVITE", 5, "application/sdp", SDP),
        ]
        for request in asked:
            phone.send(request)
        await phone.until(lambda: len(phone.responses) >= len(asked))
        by_cseq = {r.headers.require("CSeq"): r for r in phone.responses}
        assert [by_cseq[f"{n} {r.method}"].status for n, r in enumerate(asked, 1)] == [
            200, 200, 415, 200, 200,
        ]  # fmt: skip
        assert keys == ["5", "#"]
        assert "OPTIONS" in by_cseq["4 OPTIONS"].headers.get_all("Allow")
        refresh = by_cseq["5 INVITE"]
        assert refresh.body == SDP and refresh.headers.get("Contact")  # the session goes on
        assert call.state == CallState.ANSWERED


@asynccontextmanager
async def called_by_phone() -> AsyncIterator[
    tuple[StateLog[IncomingCall], StateLog[CallEvent], ScriptedPhone, int]
]:
    """peercam's endpoint taking calls (the test decides, on each, what to answer)
    and a scripted phone calling it."""
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(
        ScriptedPhone, local_addr=("127.0.0.1", 0)
    )
    events: StateLog[CallEvent] = StateLog()
    calls: StateLog[IncomingCall] = StateLog()  # .reach(CallState.CALLING): one came

    def on_request(message: Request, source: Target) -> None:
        if any(call.handle_request(message, source) for call in calls):
            return
        if message.method == "INVITE":
            calls.add(IncomingCall(endpoint, message, source, events.add, t1=T1))

    endpoint = Endpoint(on_request)
    await endpoint.open("127.0.0.1")
    try:
        yield calls, events, phone, endpoint.udp_port
    finally:
        for call in calls:
            await call.close()
        await endpoint.close()
        transport.close()


def phone_request(method: str, port: int, branch: str, number: int, to_tag: str = "") -> Request:
    request = Request(method, f"sip:door@127.0.0.1:{port}")
    for name, value in (
        ("Via", f"SIP/2.0/UDP 127.0.0.1:1;rport;branch={branch}"), ("Max-Forwards", "70"),
        ("From", "<sip:hall@127.0.0.1>;tag=hall1"),
        ("To", "<sip:door@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", "incoming-1"), ("CSeq", f"{number} {method}"),
        ("Contact", "<sip:hall@127.0.0.1>"),
    ):  # fmt: skip
        request.headers.add(name, value)
    return request


async def test_a_call_to_the_door_cancelled_before_it_is_taken_is_answered_487() -> None:
    async with called_by_phone() as (calls, events, phone, port):
        phone.peer = ("127.0.0.1", port)
        invite = phone_request("INVITE", port, "z9hG4bKinv1", 1)
        invite.headers.add("Content-Type", "application/sdp")
        invite.body = SDP
        phone.send(invite)
        async with asyncio.timeout(5):
            await calls.reach(CallState.CALLING)
        await phone.until(lambda: [r.status for r in phone.responses] == [100])  # §17.2.1
        phone.send(phone_request("CANCEL", port, "z9hG4bKinv1", 1))
        await phone.until(lambda: len(phone.responses) == 3)
        statuses = {(r.headers.require("CSeq"), r.status) for r in phone.responses}
        assert statuses == {("1 INVITE", 100), ("1 CANCEL", 200), ("1 INVITE", 487)}
        # Not ACKed: the 487 comes again (Timer G), until the ACK.
        await phone.until(lambda: [r.status for r in phone.responses].count(487) >= 2)
        ack = phone_request("ACK", port, "z9hG4bKinv1", 1, to_tag="x")
        ack.headers.set("To", phone.responses[-1].headers.require("To"))
        phone.send(ack)
        await asyncio.sleep(4 * T1 * 2)
        resent = [r.status for r in phone.responses].count(487)
        await asyncio.sleep(8 * T1)
        assert [r.status for r in phone.responses].count(487) == resent  # the ACK stopped it
        assert events[-1].state == CallState.ENDED
        assert not calls[0].accept(SDP)  # the owner, late, takes nothing


async def test_the_answer_is_resent_until_the_ack_and_a_call_never_acked_is_ended() -> None:
    async with called_by_phone() as (calls, events, phone, port):
        phone.peer = ("127.0.0.1", port)
        invite = phone_request("INVITE", port, "z9hG4bKinv2", 1)
        phone.send(invite)
        async with asyncio.timeout(5):
            await calls.reach(CallState.CALLING)
        phone.on_request = lambda r: [response_to(r, 200, "OK")] if r.method == "BYE" else []
        assert calls[0].accept(SDP)
        # No ACK: the 200 again at T1, 2 T1, ... then, after 64 T1, a BYE.
        await phone.until(lambda: "BYE" in phone.methods())
        oks = [r for r in phone.responses if r.status == 200]
        assert len(oks) >= 4 and all(r.body == SDP for r in oks)
        bye = phone.requests[-1]
        assert bye.uri == "sip:hall@127.0.0.1"  # the caller's Contact
        assert (
            Address.parse(bye.headers.require("From")).tag
            == Address.parse(oks[0].headers.require("To")).tag
        )  # in the dialog the answer made
        assert events[-1].state == CallState.ENDED


async def test_a_refusal_sent_again_is_acked_again() -> None:
    async with call_to_phone() as (call, events, phone):
        phone.on_request = lambda r: [answered(r, 486, "Busy Here")] if r.method == "INVITE" else []
        call.start()
        await phone.until(lambda: phone.methods().count("ACK") == 1)
        phone.send(answered(phone.requests[0], 486, "Busy Here"))  # as if the ACK was lost
        await phone.until(lambda: phone.methods().count("ACK") == 2)
        assert events[-1].reason == "486 Busy Here"


async def test_a_second_phone_answering_a_forked_call_is_acked_and_hung_up() -> None:
    """A PBX ringing a group forks the INVITE: two phones may answer. The call goes on
    with the first; the second's dialog is confirmed and ended at once (§13.2.2.4)."""
    async with call_to_phone() as (call, events, phone):
        phone.on_request = lambda r: [answered(r, 200, "OK")] if r.method == "INVITE" else []
        call.start()
        async with asyncio.timeout(5):
            await events.reach(CallState.ANSWERED)
        second = answered(phone.requests[0], 200, "OK")
        second.headers.set("To", phone.requests[0].headers.require("To") + ";tag=phone2")
        phone.send(second)
        await phone.until(lambda: "BYE" in phone.methods())
        bye = phone.requests[-1]
        assert Address.parse(bye.headers.require("To")).tag == "phone2"
        acks = [r for r in phone.requests if r.method == "ACK"]
        assert {Address.parse(a.headers.require("To")).tag for a in acks} == {"phone1", "phone2"}
        assert call.state == CallState.ANSWERED  # the first phone's call goes on
