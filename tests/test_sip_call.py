"""The doorbell calling a real house phone (baresip, tests/sip_phone.py) through a
real registrar (kamailio): answered, hung up from either side, cancelled while it
rings, and a number nobody has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket

from peercam.sip import sdp
from peercam.sip.call import CallEvent, CallState, OutgoingCall
from peercam.sip.dtmf import DtmfReceiver, KeyPress
from peercam.sip.message import Address, Request
from peercam.sip.transport import Endpoint, Target
from tests import sip_phone, sip_registrar
from tests.sip_registrar import DOMAIN, PHONE
from tests.sip_states import StateLog

pytestmark = pytest.mark.skipif(
    (sip_registrar.why_unavailable() or sip_phone.why_unavailable()) is not None,
    reason=str(sip_registrar.why_unavailable() or sip_phone.why_unavailable()),
)


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[int]:
    with sip_registrar.kamailio(tmp_path) as port:
        yield port


def phone(tmp_path: Path, registrar: int, answer: bool) -> sip_phone.Baresip:
    return sip_phone.started(tmp_path / "phone", registrar, 1000, answer)


Events = StateLog[CallEvent]


@asynccontextmanager
async def calling(
    registrar: int, user: str = PHONE, rtp_port: int = 40000
) -> AsyncIterator[tuple[OutgoingCall, Events]]:
    events = Events()
    calls: list[OutgoingCall] = []

    def on_request(message: Request, source: Target) -> None:
        for call in calls:
            if call.handle_request(message, source):
                return

    endpoint = Endpoint(on_request)
    await endpoint.open("127.0.0.1")
    formats = [sdp.Format(0, "PCMU", 8000), sdp.Format(101, "TELEPHONE-EVENT", 8000, fmtp="0-16")]
    offer = sdp.describe("127.0.0.1", rtp_port, formats, 1, 1)
    call = OutgoingCall(
        endpoint, f"sip:{user}@{DOMAIN}", Target("UDP", "127.0.0.1", registrar),
        Address(f"sip:door@{DOMAIN}", "Front door"), offer, events.add, t1=0.1,
    )  # fmt: skip
    calls.append(call)
    call.start()
    try:
        yield call, events
    finally:
        await call.close()
        await endpoint.close()


async def test_the_phone_answers_and_the_door_hangs_up(tmp_path: Path, registrar: int) -> None:
    baresip = phone(tmp_path, registrar, answer=True)
    try:
        async with calling(registrar) as (call, events):
            async with asyncio.timeout(10):
                answered = await events.reach(CallState.ANSWERED)
            audio = sdp.parse_audio(answered.remote_sdp)
            assert audio.codecs()[0].name == "PCMU" and audio.port > 0
            await asyncio.to_thread(baresip.wait_event, "CALL_ESTABLISHED")
            await call.hang_up()
            assert events[-1].state == CallState.ENDED and events[-1].reason == "hung up"
            # The phone saw the call end (wait_event raises if it never does).
            await asyncio.to_thread(baresip.wait_event, "CALL_CLOSED")
    finally:
        baresip.stop()


async def test_the_phone_hangs_up(tmp_path: Path, registrar: int) -> None:
    baresip = phone(tmp_path, registrar, answer=True)
    try:
        async with calling(registrar) as (_, events):
            async with asyncio.timeout(10):
                await events.reach(CallState.ANSWERED)
            await asyncio.to_thread(baresip.wait_event, "CALL_ESTABLISHED")
            baresip.command("hangup")
            async with asyncio.timeout(10):
                ended = await events.reach(CallState.ENDED)
            assert ended.reason == "hung up by the phone"
    finally:
        baresip.stop()


async def test_a_ringing_phone_is_cancelled(tmp_path: Path, registrar: int) -> None:
    baresip = phone(tmp_path, registrar, answer=False)
    try:
        async with calling(registrar) as (call, events):
            async with asyncio.timeout(10):
                ringing = await events.reach(CallState.RINGING)
            assert ringing.reason.startswith("180")
            await asyncio.to_thread(baresip.wait_event, "CALL_INCOMING")
            await call.cancel()
            async with asyncio.timeout(10):
                ended = await events.reach(CallState.ENDED)
            assert ended.reason == "cancelled"
            await asyncio.to_thread(baresip.wait_event, "CALL_CLOSED")
    finally:
        baresip.stop()


async def test_calling_an_address_nobody_has_ends_with_the_reason(registrar: int) -> None:
    async with calling(registrar, "nobody") as (_, events):
        async with asyncio.timeout(10):
            ended = await events.reach(CallState.ENDED)
        assert ended.reason == "404 Not here"


class RtpCatcher(asyncio.DatagramProtocol):
    """The RTP port peercam offered: telephone-events to the DTMF receiver, the rest
    counted."""

    def __init__(self) -> None:
        self.receiver = DtmfReceiver()
        self.keys: list[KeyPress] = []
        self.audio_packets = 0
        self.arrived = asyncio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.arrived.clear()
            await self.arrived.wait()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrived.set()
        packet = RtpPacket.parse(data)
        if packet.payload_type == 101:
            key = self.receiver.receive(packet.ssrc, packet.timestamp, packet.payload)
            if key is not None:
                self.keys.append(key)
        else:
            self.audio_packets += 1


async def test_a_key_pressed_on_the_phone_arrives_once_as_a_telephone_event(
    tmp_path: Path, registrar: int
) -> None:
    loop = asyncio.get_running_loop()
    transport, catcher = await loop.create_datagram_endpoint(
        RtpCatcher, local_addr=("127.0.0.1", 0)
    )
    rtp_port = transport.get_extra_info("sockname")[1]
    baresip = phone(tmp_path, registrar, answer=True)
    try:
        async with calling(registrar, rtp_port=rtp_port) as (call, events):
            async with asyncio.timeout(10):
                await events.reach(CallState.ANSWERED)
            await asyncio.to_thread(baresip.wait_event, "CALL_ESTABLISHED")
            async with asyncio.timeout(10):
                await catcher.until(lambda: catcher.audio_packets >= 10)  # its tone flows
            for digit in "5#":
                baresip.command("sndcode", digit)
                await asyncio.sleep(0.6)  # each press and its end packets
            async with asyncio.timeout(5):
                await catcher.until(lambda: len(catcher.keys) >= 2)
            await asyncio.sleep(0.5)
            assert [k.digit for k in catcher.keys] == ["5", "#"]  # once each
            await call.hang_up()
    finally:
        baresip.stop()
        transport.close()
