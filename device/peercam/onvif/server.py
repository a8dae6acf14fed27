"""ONVIF on its own plain-HTTP port (NVRs and Home Assistant do not trust the page's
self-signed certificate): SOAP at /onvif/device_service, /onvif/media_service,
/onvif/media2_service, /onvif/events_service and /onvif/subscription/<id>, and the snapshot at
/onvif/snapshot.jpg behind Digest or Basic (aiohttp's DigestAuthMiddleware, which
onvif-zeep-async fetches it with, answers Digest). Built with the RTSP server, whose
stream it hands out; and WS-Discovery beside it, so clients find the camera.

A request's URLs are made from the address the client reached us on (the socket's,
not the Host header it sent), so a camera on two networks answers each with the one
it can reach."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web
from multidict import CIMultiDict

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.challenge import ChallengeLogin, StaleNonce
from peercam.config import Config, OnvifConfig
from peercam.encode.codecs import H264
from peercam.events import Event, EventBus
from peercam.http.connection_guard import ConnectionLimits, GuardedListener
from peercam.http.protocol import quiet_handlers
from peercam.onvif.device_identity import DeviceIdentity, network_interfaces, read_identity
from peercam.onvif.device_service import WITHOUT_LOGIN, DeviceService
from peercam.onvif.discovery import WsDiscoveryResponder
from peercam.onvif.discovery_messages import DiscoveryIdentity, onvif_scopes
from peercam.onvif.events_service import EventsService
from peercam.onvif.media2_service import Media2Service
from peercam.onvif.media_profiles import MediaStream, MediaUrls
from peercam.onvif.media_service import MediaService
from peercam.onvif.notifications import DoorbellProperties
from peercam.onvif.pull_points import PullPoints
from peercam.onvif.soap import (
    MAX_REQUEST,
    TDS,
    TEV,
    TR2,
    TRT,
    WSNT,
    SoapFault,
    SoapRequest,
    action_not_supported,
    envelope,
    fault_envelope,
    not_authorized,
    parse_request,
)
from peercam.onvif.username_token import TokenChecker, read_token
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.recording.live_snapshot import NoPicture, SharedSnapshot
from peercam.rtsp import server as rtsp_server
from peercam.rtsp.server import RtspServer
from peercam.service.listen_later import listen_now_or_later
from peercam.service.state_dir import state_directory

logger = logging.getLogger(__name__)

SOAP_TYPE = "application/soap+xml"
# ONVIF clients are a household's NVR and Home Assistant: a few connections each,
# one held open by a pull waiting for events.
LIMITS = ConnectionLimits(total=64, per_address=16, handshake_timeout=10.0)
REAP_EVERY = 30.0  # seconds between sweeps of expired subscriptions
SERVICES = {
    TDS: "device_service",
    TRT: "media_service",
    TR2: "media2_service",
    TEV: "events_service",
    WSNT: "events_service",
}


class OnvifServer:
    def __init__(
        self,
        config: Config,
        pipeline: MediaPipeline,
        events: EventBus,
        accounts: Authenticator,
        rtsp: RtspServer,
    ) -> None:
        self.settings: OnvifConfig = config.onvif
        self._config = config
        self._host = self.settings.host or config.server.host
        self._events = events
        self._rtsp = rtsp
        self._tokens = TokenChecker(accounts)
        self._login = ChallengeLogin(accounts, config.rtsp.digest)
        self._pull_points = PullPoints()
        self._snapshots = SharedSnapshot(pipeline)
        self._properties = DoorbellProperties(self._pull_points.publish)
        self._pipeline = pipeline
        self._media = MediaService(config, rtsp.offers_backchannel)
        self._media2 = Media2Service(config, rtsp.offers_backchannel, self._synchronize)
        self._events_service = EventsService(self._pull_points, self._properties.current)
        self._device: DeviceService | None = None
        self._identity: DeviceIdentity | None = None
        self._discovery: WsDiscoveryResponder | None = None
        self._runner: web.AppRunner | None = None
        self._listener: GuardedListener | None = None
        self._bus: asyncio.Queue[Event] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    def apply_settings(self, config: Config) -> None:
        """A new camera size or rate: the profiles say so from the next request."""
        self._config = config
        self._media = MediaService(config, self._rtsp.offers_backchannel)
        self._media2 = Media2Service(config, self._rtsp.offers_backchannel, self._synchronize)

    def _synchronize(self, stream: MediaStream) -> None:
        """Media2's SetSynchronizationPoint: the stream's next frame a keyframe, if it
        is being encoded (the encoder limits how often it obliges)."""
        if self._pipeline.has_layer(H264.name, stream.layer):
            producer = self._pipeline.producer(H264.name, stream.layer)
            if producer.running:
                producer.request_keyframe("onvif-sync")

    @property
    def name(self) -> str:
        return f"ONVIF on port {self.settings.port}"

    async def start(self) -> None:
        state_dir = state_directory(self._config.server.state_dir)
        self._identity = await asyncio.to_thread(read_identity, state_dir, self.settings.name)
        interfaces = await asyncio.to_thread(network_interfaces)
        # Profile S's scope only: Media2 is served, but Profile T asks more (imaging,
        # HTTPS, more events) than this camera claims.
        scopes = onvif_scopes(
            self.settings.name,
            self._identity.model,
            self.settings.location or "unknown",
            profiles=("Streaming",),
            audio=self._config.audio.enabled,
            # Home Assistant's config flow takes the first enabled interface's.
            mac=next((found.mac for found in interfaces if found.up), None),
        )
        self._device = DeviceService(
            self._identity,
            scopes,
            network_interfaces,
            lambda: {"HTTP": self.port, "RTSP": self._rtsp.port},
            self.settings.discovery,
        )
        if self.settings.discovery:
            self._discovery = WsDiscoveryResponder(
                DiscoveryIdentity(self._identity.endpoint_uuid, scopes),
                lambda address: f"http://{address}:{self.port}/onvif/device_service",
                self.settings.discovery_port,
            )
        app = web.Application(client_max_size=MAX_REQUEST)
        app.router.add_post("/onvif/subscription/{id}", self._subscription)
        app.router.add_post("/onvif/{service}", self._soap)
        app.router.add_get("/onvif/snapshot.jpg", self._snapshot)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        assert self._runner.server is not None
        self._listener = GuardedListener(
            quiet_handlers(self._runner.server, access_log=None, keepalive_timeout=75.0),
            LIMITS,
            None,
        )
        self._bus = bus = self._events.subscribe()
        self._tasks = [
            asyncio.create_task(self._follow(bus), name="onvif-events"),
            asyncio.create_task(self._reap(), name="onvif-reaper"),
        ]
        later = await listen_now_or_later(
            self._listen, "ONVIF", self.settings.port, "onvif.port, or onvif.enabled = false"
        )
        if later is not None:
            self._tasks.append(later)

    async def _listen(self) -> None:
        assert self._listener is not None
        self.port = await self._listener.start(self._host, self.settings.port)
        logger.info("ONVIF: http://<camera>:%d/onvif/device_service", self.port)
        if self._discovery is not None:
            try:
                await self._discovery.start()  # Hello: the service is there to be found
            except OSError as error:
                logger.error(
                    "WS-Discovery: cannot use UDP %d (%s); the camera cannot be found by "
                    "discovery, only by its address",
                    self.settings.discovery_port, error.strerror or error,
                )  # fmt: skip

    async def stop(self) -> None:
        if self._discovery is not None:
            await self._discovery.stop()  # Bye, while the service still answers
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._bus is not None:
            self._events.unsubscribe(self._bus)
            self._bus = None
        self._properties.close()
        self._pull_points.close()  # pulls waiting return now, before the runner waits
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _follow(self, bus: asyncio.Queue[Event]) -> None:
        while True:
            self._properties.follow(await bus.get())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            self._pull_points.reap()

    # -- requests ------------------------------------------------------------------

    def _base_url(self, request: web.Request) -> str:
        return f"http://{_local_address(request)}:{self.port}"

    async def _soap(self, request: web.Request) -> web.Response:
        # Operations go by their namespace, whatever service path they were sent to:
        # go2rtc asks /onvif/imaging_service for the snapshot URI when GetCapabilities
        # names no imaging service.
        return await self._handle(request, "", "")

    async def _subscription(self, request: web.Request) -> web.Response:
        return await self._handle(request, "subscription", request.match_info["id"])

    async def _handle(self, request: web.Request, service: str, point_id: str) -> web.Response:
        assert self._device is not None
        try:
            soap = parse_request(await request.read())
            service = service or SERVICES.get(soap.namespace, "")
            if not service:
                raise action_not_supported(soap.operation)
            if not (service == "device_service" and soap.operation in WITHOUT_LOGIN):
                await self._check_login(soap, request)
            base = self._base_url(request)
            if service == "device_service":
                body = await self._device.answer(soap, base)
            elif service in ("media_service", "media2_service"):
                if not self._rtsp.port:
                    raise SoapFault(503, "Receiver", "ter:Action", "RTSP is not listening yet")
                host = _local_address(request)
                urls = MediaUrls(
                    f"rtsp://{host}:{self._rtsp.port}/live",
                    f"http://{host}:{self.port}/onvif/snapshot.jpg",
                )
                media = self._media if service == "media_service" else self._media2
                body = await media.answer(soap, urls)
            elif service == "events_service":
                body = await self._events_service.answer(soap, base)
            else:
                body = await self._events_service.answer_subscription(soap, point_id)
        except SoapFault as fault:
            if fault.status >= 500 and fault.subcode != "ter:ActionNotSupported":
                logger.warning("ONVIF %s from %s: %s", service, request.remote, fault.reason)
            return _fault(fault)
        except web.HTTPRequestEntityTooLarge:
            return _fault(SoapFault(413, "Sender", "ter:InvalidArgs", "request too large"))
        except Exception:
            # A fault of ours: this request fails; the client and the others go on.
            logger.exception("ONVIF %s request from %s failed", service, request.remote)
            return _fault(SoapFault(500, "Receiver", "ter:Action", "internal error"))
        return web.Response(body=envelope(body), content_type=SOAP_TYPE, charset="utf-8")

    async def _check_login(self, soap: SoapRequest, request: web.Request) -> None:
        token = read_token(soap.security)
        if token is None:
            raise not_authorized("this operation needs a WS-UsernameToken")
        try:
            principal = await self._tokens.principal(token, request.remote or "")
        except LoginThrottled as throttled:
            raise SoapFault(503, "Receiver", "ter:Action", str(throttled)) from None
        if principal is None or not principal.may("viewer"):
            raise not_authorized()

    async def _snapshot(self, request: web.Request) -> web.Response:
        client = request.remote or ""
        try:
            principal = await self._login.viewer(
                request.headers.get("Authorization", ""), "GET", client
            )
        except StaleNonce:
            return self._challenge(stale=True)
        except LoginThrottled as throttled:
            return web.Response(status=503, text=str(throttled))
        if principal is None:
            return self._challenge()
        try:
            picture = await self._snapshots.jpeg()
        except NoPicture as error:
            return web.Response(status=503, text=str(error))
        return web.Response(body=picture, content_type="image/jpeg")

    def _challenge(self, stale: bool = False) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        for challenge in self._login.challenges(stale):
            headers.add("WWW-Authenticate", challenge)
        return web.Response(status=401, headers=headers, text="401: log in")


def _fault(fault: SoapFault) -> web.Response:
    return web.Response(
        status=fault.status, body=fault_envelope(fault), content_type=SOAP_TYPE, charset="utf-8"
    )


def _local_address(request: web.Request) -> str:
    transport = request.transport
    found = transport.get_extra_info("sockname") if transport is not None else None
    address = str(found[0]) if found else socket.gethostname()
    return f"[{address}]" if ":" in address else address


def build(context: OutputContext) -> list[Output]:
    """The RTSP server, and ONVIF beside it: ONVIF hands out the RTSP server's stream
    and port, so the two are built together."""
    outputs = rtsp_server.build(context)
    config = context.config
    rtsp = next((o for o in outputs if isinstance(o, RtspServer)), None)
    if rtsp is None or not config.onvif.enabled or context.accounts is None:
        if config.onvif.enabled and not config.rtsp.enabled:
            logger.info("ONVIF is off because RTSP is (it hands out the RTSP stream)")
        return outputs
    onvif = OnvifServer(config, context.pipeline, context.events, context.accounts, rtsp)
    return [*outputs, onvif]
