"""peercam registering with a real registrar (kamailio, tests/sip_registrar.py):
challenged and answered, refreshed before expiry, over UDP and TCP; reachable at its
address while registered and not after; wrong credentials, a registrar that is not
there and a malformed message each a clear failure that leaves the rest working."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from peercam.sip.message import Request, Response, response_to
from peercam.sip.register import Account, Registration, RegistrationState, State
from peercam.sip.transaction import request
from peercam.sip.transport import Endpoint, Target
from peercam.tls.certificate import make_self_signed
from tests import sip_registrar
from tests.sip_registrar import DOMAIN, PASSWORD, USER
from tests.sip_states import StateLog

pytestmark = pytest.mark.skipif(
    sip_registrar.why_unavailable() is not None, reason=str(sip_registrar.why_unavailable())
)


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[int]:
    with sip_registrar.kamailio(tmp_path) as port:
        yield port


class Phone:
    """peercam's endpoint, answering 200 to whatever reaches it (and keeping it)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Request] = []
        self.endpoint = Endpoint(self._on_request, tls)

    def _on_request(self, message: Request, source: Target) -> None:
        self.received.append(message)
        answer = response_to(message, 200, "OK", to_tag="p1")
        self.endpoint.send_soon(answer, source)


States = StateLog[RegistrationState]


@asynccontextmanager
async def registered(
    port: int, transport: str = "UDP", password: str = PASSWORD, expires: int = 600,
    t1: float = 0.5,
) -> AsyncIterator[tuple[Phone, Registration, States]]:  # fmt: skip
    phone = Phone()
    await phone.endpoint.open("127.0.0.1")
    states = States()
    account = Account(Target(transport, "127.0.0.1", port), DOMAIN, USER, password, expires)
    registration = Registration(phone.endpoint, account, states.add, t1=t1)
    registration.start()
    try:
        yield phone, registration, states
    finally:
        await registration.stop()
        await phone.endpoint.close()


async def call_through(port: int, user: str = USER) -> Response:
    """An OPTIONS to `user`'s address of record, sent through the registrar."""
    caller = Endpoint()
    await caller.open("127.0.0.1")
    try:
        return await options(caller, Target("UDP", "127.0.0.1", port), user)
    finally:
        await caller.close()


async def options(endpoint: Endpoint, target: Target, user: str, number: int = 1) -> Response:
    message = Request("OPTIONS", f"sip:{user}@{DOMAIN}")
    for name, value in (
        ("Max-Forwards", "70"), ("From", f"<sip:hall@{DOMAIN}>;tag=h{number}"),
        ("To", f"<sip:{user}@{DOMAIN}>"), ("Call-ID", f"probe-{number}"),
        ("CSeq", "1 OPTIONS"),
    ):  # fmt: skip
        message.headers.add(name, value)
    return await request(endpoint, message, target, t1=0.1)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_registers_answers_the_challenge_and_is_reachable_until_it_leaves(
    registrar: int, transport: str
) -> None:
    async with registered(registrar, transport) as (phone, _, states):
        async with asyncio.timeout(10):
            await states.reach(State.REGISTERED)
        assert states[-1].expires == 600
        answered = await call_through(registrar)
        assert answered.status == 200  # relayed by the registrar to peercam's contact
        assert phone.received and phone.received[-1].method == "OPTIONS"
        assert (await call_through(registrar, "nobody")).status == 404
    # stop() removed the binding: the address leads nowhere now.
    assert states[-1].state == State.UNREGISTERED
    assert (await call_through(registrar)).status == 404


async def test_the_registration_is_refreshed_before_it_expires(registrar: int) -> None:
    async with registered(registrar, expires=2) as (_, registration, states):
        async with asyncio.timeout(10):
            await states.reach(State.REGISTERED)
        await asyncio.sleep(3.5)  # refreshed every 1 s (80 % of 2 s, but never sooner)
        assert registration.registrations >= 3
        # A refresh is no new registration: the state stays REGISTERED throughout.
        assert [s.state for s in states] == [State.REGISTERING, State.REGISTERED]
        assert (await call_through(registrar)).status == 200


async def test_the_expiry_read_is_our_bindings_not_another_devices(registrar: int) -> None:
    """The registrar's 200 lists every binding of the address of record: another
    device's (here one of 120 s, registered first, of the same user) must not be
    taken for ours (600 s)."""
    async with registered(registrar, expires=120) as (_, _, other):
        async with asyncio.timeout(10):
            await other.reach(State.REGISTERED)
        async with registered(registrar, expires=600) as (_, _, ours):
            async with asyncio.timeout(10):
                await ours.reach(State.REGISTERED)
            assert ours[-1].expires == 600
        assert other[-1].state == State.REGISTERED


async def test_wrong_credentials_fail_with_a_reason_and_are_retried(
    registrar: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="peercam.sip")
    async with registered(registrar, password="wrong") as (_, registration, states):
        async with asyncio.timeout(10):
            await states.reach(State.FAILED)
        assert "wrong user name or password" in states[-1].reason
        assert registration.registrations == 0
        assert "again in 5 s" in caplog.text
    assert (await call_through(registrar)).status == 404


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_a_registrar_that_is_not_there_is_a_clear_failure(transport: str) -> None:
    nobody = sip_registrar.free_port()
    async with registered(nobody, transport, t1=0.02) as (_, _, states):
        async with asyncio.timeout(5):
            await states.reach(State.FAILED)
        reason = states[-1].reason
        assert reason == ("no answer" if transport == "UDP" else "connection refused")


async def test_requests_at_once_over_tcp_share_one_connection(registrar: int) -> None:
    """Two transactions starting together to a TCP registrar open one connection, not
    one each (the first's writer was lost and its reader's end closed the other's)."""
    endpoint = Endpoint()
    await endpoint.open("127.0.0.1")
    try:
        target = Target("TCP", "127.0.0.1", registrar)
        answers = await asyncio.gather(*(options(endpoint, target, "nobody", n) for n in (1, 2)))
        assert [a.status for a in answers] == [404, 404]  # "nobody": answered over TCP
        listed = await asyncio.to_thread(
            subprocess.run,
            ["ss", "-Htn", "state", "established", "dst", f"127.0.0.1:{registrar}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        established = listed.stdout.splitlines()
        assert len(established) == 1, established
    finally:
        await endpoint.close()


class Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.append(data)


GARBAGE = [
    b"INVITE sip:x SIP/9.9\r\n\r\n",  # an unknown version
    b"\x00\xff" * 40,  # not text
    b"SIP/2.0 1\xc2\xb20 OK\r\n\r\n",  # "1²0": a digit to str.isdigit, not to int
    b"SIP/2.0 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",  # a response without Via: no transaction's
]


async def test_malformed_messages_to_peercam_are_dropped_and_it_stays_registered(
    registrar: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peercam.sip")
    async with registered(registrar) as (phone, _, states):
        async with asyncio.timeout(10):
            await states.reach(State.REGISTERED)
        loop = asyncio.get_running_loop()
        sender, replies = await loop.create_datagram_endpoint(
            Replies, remote_addr=("127.0.0.1", phone.endpoint.udp_port)
        )
        for garbage in GARBAGE:
            sender.sendto(garbage)
        # A request without From, To, CSeq or Call-ID: answered 400 along its Via.
        port = sender.get_extra_info("sockname")[1]
        sender.sendto(
            b"OPTIONS sip:door@peercam.test SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKbad;rport\r\n\r\n" % port
        )
        await asyncio.sleep(0.3)
        sender.close()
        dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == len(GARBAGE) + 1, [r.getMessage() for r in caplog.records]
        assert not [r for r in caplog.records if r.exc_info], "a message raised inside"
        assert [r.split(b"\r\n")[0] for r in replies.replies] == [b"SIP/2.0 400 Bad Request"]
        assert not phone.received  # none of it reached the owner
        assert (await call_through(registrar)).status == 200
        assert states[-1].state == State.REGISTERED


@pytest.fixture
def tls_registrar(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    if sip_registrar.why_no_tls() is not None:
        pytest.skip(str(sip_registrar.why_no_tls()))
    with sip_registrar.kamailio_with_tls(tmp_path) as ports:
        yield ports


async def test_registers_over_tls_and_is_reachable_through_it(
    tls_registrar: tuple[int, int, Path],
) -> None:
    port, tls_port, cert = tls_registrar
    phone = Phone(ssl.create_default_context(cafile=str(cert)))
    await phone.endpoint.open("127.0.0.1")
    states = States()
    target = Target("TLS", "127.0.0.1", tls_port, "127.0.0.1")
    registration = Registration(phone.endpoint, Account(target, DOMAIN, USER, PASSWORD), states.add)
    registration.start()
    try:
        async with asyncio.timeout(10):
            await states.reach(State.REGISTERED)
        # A request to the door's address reaches it over its own TLS connection.
        assert (await call_through(port)).status == 200
        assert phone.received and phone.received[-1].method == "OPTIONS"
    finally:
        await registration.stop()
        await phone.endpoint.close()


async def test_a_registrar_whose_certificate_is_not_trusted_is_a_clear_failure(
    tls_registrar: tuple[int, int, Path], tmp_path: Path
) -> None:
    _, tls_port, _ = tls_registrar
    other, other_key = tmp_path / "other-cert.pem", tmp_path / "other-key.pem"
    make_self_signed(other, other_key, ["elsewhere"], ["127.0.0.1"])
    endpoint = Endpoint(None, ssl.create_default_context(cafile=str(other)))
    await endpoint.open("127.0.0.1")
    states = States()
    target = Target("TLS", "127.0.0.1", tls_port, "127.0.0.1")
    registration = Registration(endpoint, Account(target, DOMAIN, USER, PASSWORD), states.add)
    registration.start()
    try:
        async with asyncio.timeout(10):
            await states.reach(State.FAILED)
        assert states[-1].reason.startswith("its TLS certificate is not trusted")
    finally:
        await registration.stop()
        await endpoint.close()


async def test_a_closed_tcp_connection_is_registered_again_at_once(tmp_path: Path) -> None:
    """Over TCP the binding is the connection: a registrar that closes idle ones (here
    after 2 s) would leave the door unreachable until the next refresh; it registers
    again as the connection closes, and stays reachable."""
    with sip_registrar.kamailio(tmp_path, tcp_lifetime=2) as port:
        async with registered(port, "TCP", expires=600) as (phone, registration, states):
            async with asyncio.timeout(10):
                await states.reach(State.REGISTERED)
            closed = asyncio.Event()
            phone.endpoint.when_closed(Target("TCP", "127.0.0.1", port), closed.set)
            async with asyncio.timeout(15):
                await closed.wait()  # kamailio dropped the idle connection
                await registration.bound.wait()  # and the door is bound again
            assert registration.registrations >= 2
            assert (await call_through(port)).status == 200
            assert phone.received and phone.received[-1].method == "OPTIONS"
