"""The doorbell's phone line, an output (outputs/output.py): registered at the house's
PBX (or not, calling SIP URIs directly), it calls the configured phones when the bell
rings, in parallel or one after another, each for its own time.

A phone that answers takes the call through the doorbell's own call logic
(doorbell/call.py) under the same rules as a page: the first to answer, a phone or a
viewer, has it; every other phone stops ringing (CANCEL), and pages are told by the
doorbell's events. In the call the visitor's microphone goes to the phone from its
shared encoder and the phone's audio comes out of the speaker with the floor the
answer took (echo cancellation as for a viewer); keys pressed on the phone (RFC
4733, or SIP INFO) open the door with the configured code. A hang-up on either side
ends the call everywhere."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from peercam.config import ConfigError, SipConfig
from peercam.doorbell.call import CallState as DoorbellState
from peercam.doorbell.call import Doorbell
from peercam.events import Answered, CallEnded, Declined, Event, EventBus, Missed, Ring
from peercam.media import LOW, MAIN, SUB, Layer
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.sip import audio_plan, sdp, video_plan
from peercam.sip.call import CallEvent, CallState, Credentials, OutgoingCall
from peercam.sip.call_media import CallMedia
from peercam.sip.call_video import CallVideo
from peercam.sip.incoming_call import IncomingCall
from peercam.sip.message import (
    Address,
    Request,
    SipError,
    SipUri,
    response_to,
    split_host_port,
)
from peercam.sip.register import (
    RETRY_FIRST,
    RETRY_MOST,
    Account,
    Registration,
    RegistrationState,
)
from peercam.sip.register import State as RegistrationStateKind
from peercam.sip.transport import Endpoint, Target, reply_target

logger = logging.getLogger(__name__)

KEY_GAP = 5.0  # seconds between key presses after which a code starts afresh
STOP_WAIT = 2.0  # seconds the line's stop waits for phones to confirm a hang-up


@dataclass
class LocalMedia:
    """Where peercam takes a call's audio, as its SDP says, and that SDP's version."""

    host: str
    port: int
    session: int
    version: int


@dataclass
class Leg:
    """One call with one phone: called for a ring, or calling the door."""

    target: str  # as configured, or the caller's URI
    call: OutgoingCall | IncomingCall
    media: CallMedia
    floor_id: str
    label: str
    offer: list[sdp.Format] = field(default_factory=list)  # peercam's, when it called
    connected: bool = False  # audio flows and the floor was taken: keys count
    answered_ring: bool = False  # it took the doorbell's call (else it only talks)
    local: LocalMedia | None = None
    codec: str = ""  # the one the call settled on
    video: CallVideo | None = None  # the camera to a phone that takes it
    # The video stream as peercam's SDP has it (taken, refused, or none offered), and
    # the offer's other streams it refused: answers to later offers keep them all.
    video_section: sdp.VideoSection | None = None
    refused: list[tuple[str, str]] = field(default_factory=list)
    order: list[str] | None = None  # the kinds of the phone's offer, in its order
    keys: str = ""
    last_key: float = 0.0
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class LineMetrics:
    """What /metrics shows of the line: whether the PBX has it, and its calls."""

    registered: Gauge
    calls: Counter

    @classmethod
    def made_in(cls, registry: CollectorRegistry) -> LineMetrics:
        return cls(
            Gauge("peercam_sip_registered", "1 while the PBX holds the door's registration",
                  registry=registry),
            Counter("peercam_sip_calls", "SIP calls by direction and how they went",
                    ["direction", "result"], registry=registry),
        )  # fmt: skip


class PhoneLine:
    def __init__(
        self, config: SipConfig, pipeline: MediaPipeline, doorbell: Doorbell,
        metrics: LineMetrics, video_sizes: dict[Layer, tuple[int, int, int]] | None = None,
    ) -> None:  # fmt: skip
        """`video_sizes`: each H.264 layer's width, height and rate (for the level a
        video offer names)."""
        self._config = config
        self._video_sizes = video_sizes or {}
        self._metrics = metrics
        self._pipeline = pipeline
        self._doorbell = doorbell
        self._events: EventBus = doorbell.events
        self._endpoint = Endpoint(self._on_request, _tls_context(config))
        self._registration: Registration | None = None
        self._proxy: Target | None = None  # the registrar, once its name is resolved
        # The domain of peercam's own address (empty without a PBX: its address then).
        self._domain = config.domain or (
            split_host_port(config.registrar)[0] if config.registrar else ""
        )
        self._legs: list[Leg] = []
        self._active: Leg | None = None
        self._ringing: asyncio.Task[None] | None = None
        self._answer = asyncio.Event()  # a phone took this ring's call
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queue: asyncio.Queue[Event] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.codecs: list[str] = [c for c in config.codecs if c in pipeline.codecs]
        # The camera to phones (sip.video): the smallest H.264 stream there is, a
        # phone's screen being small, else the main one.
        self._video_layer: Layer | None = None
        if config.video and "h264" in pipeline.codecs:
            self._video_layer = next(
                (layer for layer in (LOW, SUB) if pipeline.has_layer("h264", layer)), MAIN
            )
        self.registration_state: RegistrationState | None = None

    @property
    def calls(self) -> tuple[Leg, ...]:
        """The calls with phones now: ringing, talking, ending."""
        return tuple(self._legs)

    @property
    def sip_port(self) -> int:
        return self._endpoint.udp_port

    @property
    def name(self) -> str:
        where = f"{self._config.user}@{self._config.registrar}" if self._config.registrar else ""
        return f"SIP phone line {where}".strip()

    async def start(self) -> None:
        if not self.codecs:
            raise ConfigError(
                "sip.codecs: none of them is in audio.codecs, so phones would hear nothing"
            )
        try:
            await self._endpoint.open("0.0.0.0", self._config.listen_port)
        except OSError as error:
            raise ConfigError(f"sip.listen_port {self._config.listen_port}: {error}") from None
        self._queue = self._events.subscribe()
        self._listener = asyncio.create_task(self._listen(self._queue), name="sip-line")
        if self._config.registrar:
            self._own(self._register(), "sip-register-start")

    async def _registrar(self) -> Target:
        """The registrar, its name looked up once (off the event loop)."""
        if self._proxy is None:
            host, port = split_host_port(self._config.registrar)
            transport = self._config.transport.upper()
            default = 5061 if transport == "TLS" else 5060
            self._proxy = await _resolved(Target(transport, host, port or default))
        return self._proxy

    async def _register(self) -> None:
        pause = RETRY_FIRST
        while True:
            try:
                registrar = await self._registrar()
                break
            except OSError as error:
                logger.warning(
                    "SIP: registrar %s not found: %s; again in %.0f s",
                    self._config.registrar, error, pause,
                )  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_MOST)
        account = Account(
            registrar, self._domain, self._config.user, self._config.password or "",
            self._config.register_seconds,
        )  # fmt: skip
        self._registration = Registration(self._endpoint, account, self._registration_changed)
        self._registration.start()

    def _registration_changed(self, state: RegistrationState) -> None:
        self.registration_state = state
        self._metrics.registered.set(1 if state.state == RegistrationStateKind.REGISTERED else 0)
        logger.info("SIP: %s: %s %s", self.name, state.state.value, state.reason)

    def _own(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("SIP: %s failed", task.get_name(), exc_info=task.exception())

    async def _listen(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            try:
                await self._heard(event)
            except Exception:
                # One event's fault must not leave the phones unrung from then on.
                logger.exception("SIP: handling %s failed", type(event).__name__)

    async def _heard(self, event: Event) -> None:
        if isinstance(event, Ring) and event.call == DoorbellState.RINGING.value:
            if self._ringing is None and self._active is None and self._config.call:
                self._ringing = asyncio.create_task(self._ring(), name="sip-ring")
                self._ringing.add_done_callback(self._done)  # a fault is logged
        elif isinstance(event, Answered | Declined | Missed):
            if not self._holds_call():
                await self._stop_ringing()
        elif isinstance(event, CallEnded) and self._active is not None:
            if not self._holds_call():
                # Ended by the doorbell, not the phone: its BYE in a task of the line's.
                self._own(self._active.call.hang_up(), "sip-hang-up")

    def _holds_call(self) -> bool:
        holder = self._doorbell.call_holder
        return holder is not None and any(leg.floor_id == holder for leg in self._legs)

    # Ringing the phones

    async def _ring(self) -> None:
        self._answer.clear()
        try:
            if self._config.ring_mode == "parallel":
                legs = [await self._dial(target) for target in self._config.call]
                await self._ring_for([leg for leg in legs if leg is not None])
            else:
                for target in self._config.call:
                    leg = await self._dial(target)
                    if leg is not None:
                        await self._ring_for([leg])
                    if self._active is not None or self._doorbell.state != DoorbellState.RINGING:
                        break
        finally:
            self._ringing = None

    async def _ring_for(self, legs: list[Leg]) -> None:
        """Until one of `legs` answers or all ended; those still ringing after
        `ring_seconds` are cancelled."""
        all_ended: asyncio.Future[Any] = asyncio.gather(*(leg.ended.wait() for leg in legs))
        answered: asyncio.Future[Any] = asyncio.ensure_future(self._answer.wait())
        try:
            await asyncio.wait(
                [all_ended, answered], timeout=self._config.ring_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            for waiting in (all_ended, answered):
                waiting.cancel()
            await asyncio.gather(all_ended, answered, return_exceptions=True)
        for leg in legs:
            if leg is not self._active:
                self._cancel(leg)

    async def _dial(self, target: str) -> Leg | None:
        uri = target if target.startswith(("sip:", "sips:")) else f"sip:{target}@{self._domain}"
        try:
            proxy = (
                await self._registrar()
                if self._config.registrar
                else await _resolved(_direct_target(uri))
            )
            media_host = self._endpoint.local_address(proxy)[0]
        except (OSError, SipError) as error:
            logger.warning("SIP: cannot call %s: %s", uri, error)
            return None
        floor_id = "sip-" + secrets.token_hex(6)
        label = f"phone {target}"
        leg: Leg  # the callbacks below are called once it is made
        media = CallMedia(
            self._pipeline, self._doorbell.talkback, floor_id, label,
            lambda press: self._key(leg, press.digit),
        )  # fmt: skip
        try:
            port = await media.open(media_host)
        except OSError as error:
            logger.warning("SIP: cannot call %s: %s", uri, error)
            return None
        offer = audio_plan.offer_formats(self.codecs)
        local = LocalMedia(media_host, port, secrets.randbelow(1 << 31), 1)
        try:
            video, section = await self._video_offer(media_host, label)
        except BaseException:
            await media.close()  # cancelled meanwhile (a page answered): ports let go
            raise
        body = sdp.describe(media_host, port, offer, local.session, local.version, video=section)
        caller = Address(f"sip:{self._config.user or 'door'}@{self._domain or media_host}",
                         self._config.display_name)  # fmt: skip
        credentials = (
            Credentials(self._config.user, self._config.password)
            if self._config.password is not None
            else None
        )
        call = OutgoingCall(
            self._endpoint, uri, proxy, caller, body, lambda event: self._call_event(leg, event),
            credentials, on_key=lambda digit: self._key(leg, digit),
            on_offer=lambda body: self._new_offer(leg, body),
        )  # fmt: skip
        leg = Leg(
            target, call, media, floor_id, label, offer, local=local, video=video,
            video_section=section,
        )  # fmt: skip
        self._legs.append(leg)
        call.start()
        logger.info("SIP: ringing %s", uri)
        return leg

    def _call_event(self, leg: Leg, event: CallEvent) -> None:
        if event.state == CallState.RINGING:
            logger.info("SIP: %s is ringing", leg.target)
        elif event.state == CallState.ANSWERED and isinstance(leg.call, OutgoingCall):
            self._own(self._answered(leg, event.remote_sdp), "sip-answered")
        elif event.state == CallState.ENDED:
            logger.info("SIP: call to %s ended: %s", leg.target, event.reason)
            incoming = isinstance(leg.call, IncomingCall)
            result = "talked" if leg.connected else "refused" if incoming else "unanswered"
            self._metrics.calls.labels("in" if incoming else "out", result).inc()
            leg.ended.set()
            self._own(self._leg_ended(leg, event.reason), "sip-ended")

    async def _answered(self, leg: Leg, remote_sdp: bytes) -> None:
        try:
            plan = audio_plan.from_answer(leg.offer, sdp.parse_audio(remote_sdp))
        except SipError as error:
            logger.warning("SIP: %s answered with an SDP peercam cannot use: %s", leg.target, error)
            plan = None
        if plan is None:
            logger.warning("SIP: %s answered with no codec peercam sends; hanging up", leg.target)
            await leg.call.hang_up()
            return
        call = leg.call
        if isinstance(call, OutgoingCall) and call.cancel_asked:
            # Picked up just as its ringing was stopped (its time ran out, someone else
            # answered): the answer crossed the CANCEL, and the call module hangs it up.
            logger.info("SIP: %s answered as it was being cancelled", leg.target)
            return
        outcome = await self._doorbell.answer(leg.floor_id, leg.label)
        if not outcome.ok:
            # Someone else (a page, another phone) took the call first.
            logger.info("SIP: %s answered too late (%s); hanging up", leg.target, outcome.reason)
            await leg.call.hang_up()
            return
        if leg.ended.is_set():
            # The phone hung up while the doorbell was being answered.
            await self._doorbell.hang_up(leg.floor_id, leg.label)
            return
        self._active = leg
        leg.answered_ring = leg.connected = True
        leg.codec = plan.codec.name
        leg.media.start(plan)
        seen = self._start_video(leg, video_plan.from_answer(_video_of(remote_sdp)))
        logger.info("SIP: %s answered; audio in %s%s", leg.target, plan.codec.name, seen)
        self._answer.set()

    async def _leg_ended(self, leg: Leg, reason: str) -> None:
        await leg.media.close()
        if leg.video is not None:
            await leg.video.close()
        if leg is self._active:
            self._active = None
        await self._release(leg)
        # Last: a call's close may wait for its BYE's transaction to end.
        await leg.call.close()
        if leg in self._legs:
            self._legs.remove(leg)

    async def _release(self, leg: Leg) -> None:
        """Give back what `leg` took: the doorbell's call, or the floor it talked with."""
        if leg.answered_ring:
            await self._doorbell.hang_up(leg.floor_id, leg.label)
        elif leg.connected:
            await self._doorbell.talk(leg.floor_id, leg.label, False)
        leg.answered_ring = leg.connected = False

    def _cancel(self, leg: Leg) -> None:
        """Stop `leg` ringing, in a task of the line's: the phone may take up to 64 T1
        to confirm, and nothing else waits for that."""
        call = leg.call
        if isinstance(call, OutgoingCall) and call.state in (CallState.CALLING, CallState.RINGING):
            self._own(call.cancel(), "sip-cancel")

    async def _stop_ringing(self) -> None:
        ringing = self._ringing
        if ringing is not None:
            ringing.cancel()
            await asyncio.gather(ringing, return_exceptions=True)
        for leg in list(self._legs):
            self._cancel(leg)

    def _new_offer(self, leg: Leg, body: bytes) -> bytes | None:
        """The phone's new offer in the call: the same codec at a new address, or a
        hold. peercam's answer, or None to refuse it (another codec: the call goes on
        as it was)."""
        local = leg.local
        if local is None or not leg.codec:
            return None
        try:
            made = audio_plan.from_offer(sdp.parse_audio(body), [leg.codec])
        except SipError as error:
            logger.info("SIP: %s sent an offer peercam cannot use: %s", leg.target, error)
            return None
        if made is None:
            logger.info("SIP: %s asked for another codec in the call; refused", leg.target)
            return None
        plan, formats = made
        leg.media.retarget(plan.remote, plan.sends)
        self._follow_video(leg, body)
        local.version += 1
        logger.info("SIP: %s moved its audio to %s:%d", leg.target, *plan.remote)
        direction = _answering_direction(body)
        return sdp.describe(
            local.host, local.port, formats, local.session, local.version, direction,
            video=leg.video_section, refused=leg.refused, order=leg.order,
        )  # fmt: skip

    def _follow_video(self, leg: Leg, offer: bytes) -> None:
        """The video of a new offer in the call, answered position for position: the
        camera follows the phone's video to its new address, stops while it is held,
        and stays refused where it was (or was never offered)."""
        streams = sdp.count_streams(offer)
        kinds = leg.order = [kind for kind, _ in streams]
        first_video = kinds.index("video") if "video" in kinds else None
        first_audio = kinds.index("audio") if "audio" in kinds else None
        leg.refused = [
            stream for i, stream in enumerate(streams) if i not in (first_audio, first_video)
        ]
        if first_video is None:
            leg.video_section = None
            if leg.video is not None:
                leg.video.retarget(("0.0.0.0", 9), sends=False)  # no longer offered
            return
        video = _video_of(offer)
        section = leg.video_section
        if leg.video is None or section is None or section.port == 0 or video is None:
            numbers = streams[first_video][1].split()[1:]
            formats = [sdp.Format(int(n), "", 0) for n in numbers if n.isdigit()]
            leg.video_section = sdp.VideoSection(0, formats)
            return
        taking = video.port != 0 and video.direction not in ("sendonly", "inactive")
        leg.video.retarget((video.address, video.port), sends=taking)
        made = video_plan.from_offer(video)  # its numbering of H.264 may have changed
        leg.video_section = sdp.VideoSection(
            section.port if video.port else 0, [made[1]] if made else section.formats,
            "sendonly" if taking else "inactive",
        )  # fmt: skip

    # Video to phones that take it

    async def _video_offer(
        self, host: str, label: str
    ) -> tuple[CallVideo | None, sdp.VideoSection | None]:
        """The camera offered to a phone being called, when sip.video asks for it."""
        if self._video_layer is None:
            return None, None
        video = CallVideo(self._pipeline, self._video_layer, label)
        try:
            port = await video.open(host)
        except OSError as error:
            logger.warning("SIP: no video for %s: %s", label, error)
            return None, None
        width, height, fps = self._video_sizes.get(self._video_layer, (1280, 720, 30))
        return video, sdp.VideoSection(port, [video_plan.offer_format(width, height, fps)])

    async def _video_answer(self, leg: Leg, offer: bytes, host: str) -> video_plan.VideoPlan | None:
        """For a phone's offer: the video peercam takes (sip.video on, H.264 that fits)
        and the streams it refuses, noted on `leg` for its SDP."""
        streams = sdp.count_streams(offer)
        leg.order = [kind for kind, _ in streams]
        first_video = next((i for i, (kind, _) in enumerate(streams) if kind == "video"), None)
        first_audio = next((i for i, (kind, _) in enumerate(streams) if kind == "audio"), None)
        leg.refused = [
            stream for i, stream in enumerate(streams) if i not in (first_audio, first_video)
        ]
        if first_video is None:
            return None
        offered = _video_of(offer)
        made = video_plan.from_offer(offered) if self._video_layer is not None else None
        if made is not None:
            video = CallVideo(self._pipeline, self._video_layer or MAIN, leg.label)
            try:
                port = await video.open(host)
            except OSError as error:
                logger.warning("SIP: no video for %s: %s", leg.label, error)
                made = None
            else:
                leg.video = video
                leg.video_section = sdp.VideoSection(port, [made[1]])
                return made[0]
        # Refused, as RFC 3264 §6 asks: port 0, its formats named.
        numbers = streams[first_video][1].split()[1:]  # past its transport
        formats = [sdp.Format(int(n), "", 0) for n in numbers if n.isdigit()]
        leg.video_section = sdp.VideoSection(0, formats)
        return None

    def _start_video(self, leg: Leg, plan: video_plan.VideoPlan | None) -> str:
        """Start the camera to a phone that took it: how the log says so."""
        if leg.video is None:
            return ""
        if plan is None:
            return "; no video (not taken)"
        leg.video.start(plan)
        return f"; video from the {leg.video.layer} H.264 stream"

    # Keys pressed in a call

    def _key(self, leg: Leg, digit: str) -> None:
        if not leg.connected or not self._config.door_code:
            return
        now = time.monotonic()
        if now - leg.last_key > KEY_GAP:
            leg.keys = ""
        leg.keys = (leg.keys + digit)[-len(self._config.door_code) :]
        leg.last_key = now
        if leg.keys == self._config.door_code:
            leg.keys = ""
            logger.info("SIP: %s keyed the door code", leg.target)
            self._own(self._doorbell.open_door(leg.floor_id, leg.label), "sip-open-door")

    # Calls to the door

    def _on_request(self, message: Request, source: Target) -> None:
        for leg in self._legs:
            if leg.call.handle_request(message, source):
                return
        if message.method == "INVITE" and Address.parse(message.headers.require("To")).tag is None:
            self._incoming(message, source)
            return
        if message.method == "ACK":
            return
        if message.method == "OPTIONS":
            answer = response_to(message, 200, "OK")
        else:
            answer = response_to(message, 481, "Call/Transaction Does Not Exist")
        self._endpoint.send_soon(answer, reply_target(message, source))

    def _incoming(self, invite: Request, source: Target) -> None:
        floor_id = "sip-" + secrets.token_hex(6)
        leg: Leg  # the callbacks below are called once it is made
        call = IncomingCall(
            self._endpoint, invite, source, lambda event: self._call_event(leg, event),
            on_key=lambda digit: self._key(leg, digit),
            on_offer=lambda body: self._new_offer(leg, body),
        )  # fmt: skip
        caller = call.caller.uri
        label = f"phone {_user(caller) or caller}"
        media = CallMedia(
            self._pipeline, self._doorbell.talkback, floor_id, label,
            lambda press: self._key(leg, press.digit),
        )  # fmt: skip
        leg = Leg(caller, call, media, floor_id, label)
        self._legs.append(leg)
        self._own(self._take_incoming(leg, call, invite, source), "sip-incoming")

    async def _take_incoming(
        self, leg: Leg, call: IncomingCall, invite: Request, source: Target
    ) -> None:
        if not self._allowed(call.caller.uri, source):
            logger.warning("SIP: a call from %s refused: not in sip.allowed_callers", leg.target)
            call.refuse(403, "Forbidden")
            return
        try:
            made = audio_plan.from_offer(sdp.parse_audio(invite.body), self.codecs)
        except SipError as error:
            logger.warning("SIP: a call from %s refused: its SDP: %s", leg.target, error)
            made = None
        if made is None:
            call.refuse(488, "Not Acceptable Here")
            return
        plan, formats = made
        try:
            host = self._endpoint.local_address(source)[0]
            port = await leg.media.open(host)
        except OSError as error:
            logger.warning("SIP: a call from %s refused: %s", leg.target, error)
            call.refuse(500, "Server Internal Error")
            return
        # A phone calling while the bell rings answers it; otherwise it talks through
        # the door as a viewer's Talk button does.
        if self._doorbell.state == DoorbellState.RINGING:
            outcome = await self._doorbell.answer(leg.floor_id, leg.label)
            leg.answered_ring = outcome.ok
        else:
            outcome = await self._doorbell.talk(leg.floor_id, leg.label, True)
        if not outcome.ok:
            logger.info("SIP: a call from %s refused: %s", leg.target, outcome.reason)
            call.refuse(486, "Busy Here")
            return
        leg.connected = True
        leg.codec = plan.codec.name
        leg.local = LocalMedia(host, port, secrets.randbelow(1 << 31), 1)
        direction = _answering_direction(invite.body)
        taken = await self._video_answer(leg, invite.body, host)
        body = sdp.describe(
            host, port, formats, leg.local.session, 1, direction,
            video=leg.video_section, refused=leg.refused, order=leg.order,
        )  # fmt: skip
        if not call.accept(body):
            # The phone cancelled while the floor was being taken: give it back.
            await self._release(leg)
            if leg.video is not None:
                await leg.video.close()
            return
        if leg.answered_ring:
            self._active = leg
            self._answer.set()
        leg.media.start(plan)
        seen = self._start_video(leg, taken)
        logger.info("SIP: %s called the door; audio in %s%s", leg.target, plan.codec.name, seen)

    def _allowed(self, uri: str, source: Target) -> bool:
        """Whether a call from `uri`, come from `source`, may be taken. The From header
        is the caller's say-so: with a PBX, only calls the PBX relays count (it
        authenticated its phones); without one, an allowed sip: URI must also come
        from the host it names."""
        try:
            caller = SipUri.parse(uri)
        except SipError:
            return False
        proxy = self._proxy
        if self._config.registrar and (
            proxy is None or (source.host, source.port) != (proxy.host, proxy.port)
        ):
            return False
        for allowed in self._config.allowed_callers:
            if allowed.startswith(("sip:", "sips:")):
                try:
                    wanted = SipUri.parse(allowed)
                except SipError:
                    continue
                same = (wanted.user, wanted.host.lower()) == (caller.user, caller.host.lower())
                if same and (self._config.registrar or wanted.host == source.host):
                    return True
            elif allowed == caller.user and caller.host.lower() == self._domain.lower():
                return True
        return False

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._queue is not None:
            self._events.unsubscribe(self._queue)
        await self._stop_ringing()
        legs = list(self._legs)
        try:
            # A BYE or CANCEL each, but the daemon's stop does not wait out a phone
            # that does not answer them.
            async with asyncio.timeout(STOP_WAIT):
                await asyncio.gather(*(leg.call.hang_up() for leg in legs))
        except TimeoutError:
            logger.info("SIP: not every phone confirmed the end of its call")
        for leg in legs:
            await leg.media.close()
            if leg.video is not None:
                await leg.video.close()
            await leg.call.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._registration is not None:
            await self._registration.stop()
        await self._endpoint.close()


def _tls_context(config: SipConfig) -> ssl.SSLContext | None:
    if config.transport != "tls":
        return None
    try:
        return ssl.create_default_context(cafile=config.tls_ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"sip.tls_ca_file {config.tls_ca_file}: {error}") from None


def _video_of(body: bytes) -> sdp.AudioDescription | None:
    try:
        return sdp.parse_video(body)
    except SipError:
        return None  # video peercam cannot read is video it does not send


def _answering_direction(offer: bytes) -> str:
    """RFC 3264 §6.1: the answer's direction mirrors the offer's."""
    try:
        offered = sdp.parse_audio(offer).direction
    except SipError:
        return "sendrecv"
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(offered, offered)


def _user(uri: str) -> str:
    try:
        return SipUri.parse(uri).user
    except SipError:
        return ""


def _direct_target(uri: str) -> Target:
    """Where a SIP URI is reached without a proxy: its host and port (RFC 3263's
    DNS lookups of SRV records are not made: a house phone is an address)."""
    parsed = SipUri.parse(uri)
    if uri.lower().startswith("sips:"):
        return Target("TLS", parsed.host, parsed.port or 5061)  # §26.2.2: TLS or nothing
    transport = (parsed.transport or "UDP").upper()
    return Target(transport, parsed.host, parsed.port or (5061 if transport == "TLS" else 5060))


async def _resolved(target: Target) -> Target:
    """`target` with its host name looked up once, off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        target.host, target.port, type=socket.SOCK_DGRAM
    )
    if not infos:
        raise OSError(f"{target.host} has no address")
    # The name stays beside the address: a TLS certificate is checked against it.
    return Target(target.transport, str(infos[0][4][0]), target.port, target.host)


def build(context: OutputContext) -> list[Output]:
    config = context.config.sip
    if not config.enabled or context.doorbell is None:
        return []
    metrics = LineMetrics.made_in(context.metrics.registry)
    camera = context.config.camera
    sizes: dict[Layer, tuple[int, int, int]] = {MAIN: (*camera.dimensions, camera.fps)}
    for layer, stream in ((SUB, context.config.small_stream), (LOW, context.config.low_layer)):
        if stream is not None:
            sizes[layer] = (stream.width, stream.height, stream.fps)
    return [PhoneLine(config, context.pipeline, context.doorbell, metrics, sizes)]
