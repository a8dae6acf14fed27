"""Registration with a registrar or PBX (RFC 3261 §10): REGISTER, answered with
digest credentials when challenged, refreshed before it expires, retried with a
growing pause when it fails. Its state is told through a callback, typed."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from peercam.sip import digest
from peercam.sip.message import Address, Request, Response, SipError, SipUri, is_number
from peercam.sip.transaction import T1, request
from peercam.sip.transport import Endpoint, Target

logger = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MOST = 5.0, 300.0  # seconds: a failed registration's pauses
# Seconds between CRLF pings on a TCP or TLS registrar's connection (RFC 5626 §4.4.1
# suggests 95-120 s; NAT and PBX idle timers are shorter at home).
KEEP_ALIVE_SECONDS = 25.0
# Seconds stop() waits to remove the binding: a daemon stopping does not wait out a
# registrar that is gone (the binding then lapses at its expiry).
UNREGISTER_WAIT = 2.0
MAX_CHALLENGES = 2  # a second 401 in a row for new credentials means they are wrong


@dataclass(frozen=True)
class Account:
    registrar: Target
    domain: str  # the SIP domain: sip:user@domain
    user: str
    password: str
    expires: int = 600  # seconds asked for; the registrar may grant less


class State(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # retried after a pause
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class RegistrationState:
    state: State
    reason: str = ""
    expires: int | None = None  # seconds granted, when registered


class Registration:
    def __init__(
        self, endpoint: Endpoint, account: Account,
        on_state: Callable[[RegistrationState], None] = lambda state: None, t1: float = T1,
    ) -> None:  # fmt: skip
        self._endpoint = endpoint
        self.account = account
        self._on_state = on_state
        self._t1 = t1
        self._call_id = secrets.token_hex(12)
        self._tag = secrets.token_hex(6)
        self._cseq = 0
        self._task: asyncio.Task[None] | None = None
        self.state = RegistrationState(State.UNREGISTERED)
        self.registrations = 0  # successful REGISTERs, refreshes included
        # Until when the registrar holds our binding (monotonic): a failed refresh does
        # not remove it, so stop() still asks to remove it while it may stand.
        self._bound_until = 0.0
        self._contact: SipUri | None = None  # the binding's URI, as last sent
        self._lost = asyncio.Event()  # the connection the binding lives on closed
        # Set while a binding made over the current connection stands.
        self.bound = asyncio.Event()
        self._pinging: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sip-register-{self.account.user}")
        registrar = self.account.registrar
        if registrar.transport != "UDP":
            # Over TCP or TLS the binding is the connection: when it closes (a PBX that
            # drops idle ones, a restart), nothing reaches the door until it registers
            # again, so it does at once; a ping now and then finds a dead one out.
            self._unwatch = self._endpoint.when_closed(registrar, self._connection_lost)
            self._pinging = asyncio.create_task(self._ping(), name="sip-keep-alive")

    def _connection_lost(self) -> None:
        self.bound.clear()
        if self.state.state == State.REGISTERED:
            logger.info(
                "SIP: the connection to %s closed; registering again", self.account.registrar.host
            )
            self._lost.set()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(KEEP_ALIVE_SECONDS)
            if self.state.state != State.REGISTERED:
                continue
            try:
                await self._endpoint.keep_alive(self.account.registrar)
            except OSError:
                self._connection_lost()

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0) if it was made."""
        for task in (self._task, self._pinging):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._pinging = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
            self._task = None
        if time.monotonic() < self._bound_until:
            try:
                async with asyncio.timeout(UNREGISTER_WAIT):
                    await self._register(0)
            except (TimeoutError, OSError, SipError) as error:
                logger.info("SIP: could not unregister %s: %s", self.account.user, error)
        self._bound_until = 0.0
        self._set(RegistrationState(State.UNREGISTERED))

    def _set(self, state: RegistrationState) -> None:
        if state != self.state:
            self.state = state
            self._on_state(state)

    async def _run(self) -> None:
        pause = RETRY_FIRST
        while True:
            if self.state.state != State.REGISTERED:
                self._set(RegistrationState(State.REGISTERING))  # a refresh stays REGISTERED
            try:
                granted = await self._register(self.account.expires)
            except (TimeoutError, OSError, SipError) as error:
                reason = _why(error)
                logger.warning(
                    "SIP: registering %s at %s failed: %s; again in %.0f s",
                    self.account.user, self.account.registrar.host, reason, pause,
                )  # fmt: skip
                self._set(RegistrationState(State.FAILED, reason))
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_MOST)
                continue
            pause = RETRY_FIRST
            self.registrations += 1
            self._bound_until = time.monotonic() + granted
            self.bound.set()
            self._set(RegistrationState(State.REGISTERED, "", granted))
            # Refreshed well before it lapses, and never in a busy loop (§10.2.4);
            # at once if the connection it lives on closed.
            self._lost.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(1.0, min(granted * 0.8, granted - 10.0))):
                    await self._lost.wait()

    async def _register(self, expires: int) -> int:
        """One REGISTER (challenges answered): the seconds granted. SipError when the
        registrar refuses, with its status and reason."""
        account = self.account
        authorization: tuple[str, str] | None = None
        for _ in range(MAX_CHALLENGES + 1):
            response = await request(
                self._endpoint, self._request(expires, authorization), account.registrar,
                self._t1,
            )  # fmt: skip
            if response.status in (401, 407):
                authorization = self._answer(response, authorization is not None)
                continue
            if response.status == 423 and expires:  # Interval Too Brief: ask for its minimum
                minimum = response.headers.get("Min-Expires") or ""
                if is_number(minimum) and int(minimum) > expires:
                    expires = int(minimum)
                    continue
            if 200 <= response.status < 300:
                return self._granted(response, expires)
            raise SipError(f"{response.status} {response.reason}")
        raise SipError("credentials refused (challenged again after answering)")

    def _answer(self, response: Response, answered_before: bool) -> tuple[str, str]:
        challenge = digest.challenge_in(response)
        if answered_before and not challenge.stale:
            raise SipError(f"{response.status} {response.reason}: wrong user name or password")
        account = self.account
        return digest.answer(
            response, challenge, account.user, account.password, "REGISTER",
            f"sip:{account.domain}",
        )  # fmt: skip

    def _request(self, expires: int, authorization: tuple[str, str] | None) -> Request:
        account = self.account
        self._cseq += 1
        host, port = self._endpoint.local_address(account.registrar)
        transport = account.registrar.transport.lower()
        aor = Address(f"sip:{account.user}@{account.domain}")
        contact = Address(f"sip:{account.user}@{host}:{port};transport={transport}")
        self._contact = SipUri.parse(contact.uri)
        message = Request("REGISTER", f"sip:{account.domain}")
        message.headers.add("Max-Forwards", "70")
        message.headers.add("From", str(aor.with_param("tag", self._tag)))
        message.headers.add("To", str(aor))
        message.headers.add("Call-ID", self._call_id)
        message.headers.add("CSeq", f"{self._cseq} REGISTER")
        message.headers.add("Contact", str(contact))
        message.headers.add("Expires", str(expires))
        message.headers.add("User-Agent", "peercam")
        if authorization is not None:
            message.headers.add(*authorization)
        return message

    def _granted(self, response: Response, asked: int) -> int:
        """The expiry the registrar gave our binding (its Contact's, else Expires)."""
        for value in response.headers.get_all("Contact"):
            try:
                contact = Address.parse(value)
            except SipError:
                continue
            granted = contact.param("expires") or ""
            if is_number(granted) and self._is_ours(contact.uri):
                return int(granted)
        expires = response.headers.get("Expires") or ""
        return int(expires) if is_number(expires) else asked

    def _is_ours(self, uri: str) -> bool:
        """Whether a binding the registrar lists is the one we sent (an address of
        record has others: other devices, stale ones), by user, host and port."""
        try:
            listed = SipUri.parse(uri)
        except SipError:
            return False
        ours = self._contact
        return ours is not None and (listed.user, listed.host.lower(), listed.port) == (
            ours.user, ours.host.lower(), ours.port,
        )  # fmt: skip


def _why(error: Exception) -> str:
    """A failed registration's reason, as a user reads it in the log and the page."""
    if isinstance(error, TimeoutError):
        return "no answer"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
