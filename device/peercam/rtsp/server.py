"""RTSP/1.0 for NVRs (RFC 2326): rtsp://camera:8554/live, from the shared encoded
packets, as an output on the output seam.

Methods: OPTIONS, DESCRIBE, SETUP (RTP over UDP unicast or TCP interleaved), PLAY,
PAUSE, TEARDOWN, GET_PARAMETER (keep-alive). Each session times out when its client
is not heard from (a request naming it, or RTCP) for `rtsp.session_timeout` seconds,
and ends with its connection. /live carries H.264 and the audio `rtsp.audio` names;
/live/opus, /live/pcmu, /live/pcma, /live/aac and /live/noaudio choose for themselves.
/live/sub (and /live/sub/opus, …) is the same with the small H.264 stream, encoded
once for all who take it, for an NVR's detection.

Access is the HTTP interface's accounts, the viewer role enough, with the same failure
throttling: Digest and Basic (auth/challenge.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import Gauge

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.challenge import ChallengeLogin, StaleNonce
from peercam.auth.principal import Principal
from peercam.config import Config, RtspConfig
from peercam.doorbell.call import Doorbell
from peercam.encode.codecs import BY_NAME, H264, CodecSpec
from peercam.encode.rtp_stream import RtpStream
from peercam.fanout.hub import SubscriptionClosed
from peercam.h264_bitstream import PPS, SPS, nal_type, nal_units
from peercam.media import MAIN, SUB, Layer
from peercam.metrics import Metrics
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.rtsp.backchannel import REQUIRE_TAG, Backchannel
from peercam.rtsp.describe import Track, h264_fmtp, payload_types, session_description
from peercam.rtsp.request import Interleaved, Request, Response, RtspError, read_message
from peercam.rtsp.session import (
    BackchannelIn,
    InterleavedSink,
    PacketSink,
    RtspSession,
    TrackOut,
    UdpSink,
)
from peercam.rtsp.transport_spec import choose_transport
from peercam.service.listen_later import listen_now_or_later

logger = logging.getLogger(__name__)

PATH = "/live"
SUB_PATH = "sub"  # /live/sub: the small stream (camera.lores_size), for NVRs' detection
METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER")
PUBLIC = ", ".join(METHODS)
WAIT_FOR_PARAMETER_SETS = 8.0  # seconds: the camera may be starting (a Pi's takes ~2)
PARAMETER_SETS_KEPT = 30.0  # seconds; a camera restarted with another size has new ones
WRITE_BUFFER = 512 * 1024  # per connection; past it a TCP client's frames are skipped


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.client = str(peer[0])
        local = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        self.local = str(local[0])
        self.sessions: dict[str, RtspSession] = {}
        # Its DESCRIBE asked for the ONVIF back-channel: go2rtc sends the Require
        # header there only, not with the SETUP that follows.
        self.asked_for_backchannel = False


class RtspServer:
    def __init__(
        self,
        config: Config,
        pipeline: MediaPipeline,
        accounts: Authenticator,
        metrics: Metrics,
        doorbell: Doorbell | None = None,
    ) -> None:
        """`doorbell`: its talkback speaker hears the ONVIF back-channel, if it has one."""
        self.settings: RtspConfig = config.rtsp
        self._host = self.settings.host or config.server.host
        self._audio_enabled = config.audio.enabled
        self._pipeline = pipeline
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, RtspSession] = {}
        self._owners: dict[str, _Connection] = {}  # session id -> its connection
        self._connections: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._listening_later: asyncio.Task[None] | None = None
        self._login = ChallengeLogin(accounts, self.settings.digest)
        has_speaker = doorbell is not None and doorbell.talkback.speaker is not None
        self._doorbell = doorbell if has_speaker else None
        # Per layer: when its SPS and PPS were read, and the fmtp made of them.
        self._fmtp: dict[Layer, tuple[float, str]] = {}
        self._gauge = Gauge(
            "peercam_rtsp_sessions", "RTSP sessions set up", registry=metrics.registry
        )
        self.port = 0

    def apply_settings(self, config: Config) -> None:
        """A new camera or size (settings/impact.py): the parameter sets DESCRIBE
        answers with are read afresh; sessions in progress keep their stream, whose
        next keyframe carries the new ones in band."""
        self._fmtp.clear()

    @property
    def name(self) -> str:
        return f"RTSP server on port {self.settings.port}"

    @property
    def offers_backchannel(self) -> bool:
        """Whether there is a speaker for the ONVIF back-channel to talk through."""
        return self._doorbell is not None

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="rtsp-reaper")
        self._listening_later = await listen_now_or_later(
            self._listen, "RTSP", self.settings.port, "rtsp.port, or rtsp.enabled = false"
        )

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self._host or None, self.settings.port, reuse_address=True
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        logger.info("RTSP: rtsp://<camera>:%d%s", self.port, PATH)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        owned = [self._reaper, self._listening_later]
        tasks = [*self._connections, *(task for task in owned if task is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connections -------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        connection = _Connection(reader, writer)
        try:
            await self._converse(connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._connections.discard(task)
            for session in list(connection.sessions.values()):
                await self._end(session)
            writer.close()

    async def _converse(self, connection: _Connection) -> None:
        timeout = self.settings.session_timeout
        while True:
            try:
                message = await asyncio.wait_for(read_message(connection.reader), timeout)
            except TimeoutError:
                if not any(s.playing for s in connection.sessions.values()):
                    return  # idle and not playing: nothing to keep the connection for
                continue
            except RtspError as error:
                await self._write(connection, Response(error.status, dict(error.headers)), None)
                logger.info("RTSP %s: %s", connection.client, error)
                return
            if message is None:
                return
            if isinstance(message, Interleaved):
                # RTCP receiver reports, and a back-channel's RTP on its channel.
                for session in connection.sessions.values():
                    session.heard_on_channel(message.channel, message.data)
                continue
            try:
                response = await self._respond(connection, message)
            except RtspError as error:
                response = Response(error.status, dict(error.headers))
                logger.info("RTSP %s %s from %s: %s", message.method, message.uri[:80],
                            connection.client, error)  # fmt: skip
                if error.close:
                    await self._write(connection, response, message.cseq)
                    return
            except (ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception:
                # A fault of ours: this request fails, the client and the others go on.
                logger.exception("RTSP %s from %s failed", message.method, connection.client)
                response = Response(500)
            await self._write(connection, response, message.cseq)

    async def _write(self, connection: _Connection, response: Response, cseq: str | None) -> None:
        response.headers.setdefault("Server", "peercam")
        connection.writer.write(response.serialize(cseq))
        await connection.writer.drain()

    # -- requests ----------------------------------------------------------------

    async def _respond(self, connection: _Connection, request: Request) -> Response:
        method = request.method
        if method == "OPTIONS":
            return Response(200, {"Public": PUBLIC})
        if method not in METHODS:
            return Response(405, {"Allow": PUBLIC})
        try:
            principal = await self._login.viewer(
                request.header("authorization"), method, connection.client
            )
        except StaleNonce:
            return Response(401, challenges=self._login.challenges(stale=True))
        except LoginThrottled as throttled:
            raise RtspError(503, str(throttled)) from None
        if principal is None:
            return Response(401, challenges=self._login.challenges())
        target = _target(request.uri, self.settings.audio)
        if method == "DESCRIBE":
            return await self._describe(connection, request, target, principal)
        if method == "SETUP":
            return await self._setup(connection, request, principal, target)
        session = self._session_of(connection, request)
        session.heard()
        if method == "PLAY":
            session.play()
            base = _target(request.uri, self.settings.audio).base
            info = ",".join(
                f"url={base}{control};seq={out.stream.next_sequence}"
                for control, out in session.tracks.items()
            )
            headers = _session_headers(session, self.settings, Range="npt=0.000-")
            if info:  # none for a session that only talks (the back-channel)
                headers["RTP-Info"] = info
            return Response(200, headers)
        if method == "PAUSE":
            await session.pause()
            return Response(200, _session_headers(session, self.settings))
        if method == "TEARDOWN":
            await self._end(session)
            return Response(200)
        return Response(200, _session_headers(session, self.settings))  # GET_PARAMETER

    def _codecs(self, audio: str, layer: Layer) -> list[CodecSpec]:
        available = set(self._pipeline.codecs)
        if H264.name not in available:
            raise RtspError(503, "the camera has no H.264 stream (video.codecs)")
        if not self._pipeline.has_layer(H264.name, layer):
            raise RtspError(404, "no small stream here (camera.lores_size is off)")
        codecs = [H264]
        if audio != "none" and self._audio_enabled:
            if audio not in available:
                raise RtspError(503, f"{audio} is not among audio.codecs")
            codecs.append(BY_NAME[audio])
        return codecs

    async def _tracks(self, target: Target, describe: bool) -> list[Track]:
        codecs = self._codecs(target.audio, target.layer)
        fmtp = await self._h264_fmtp(target.layer) if describe else ""
        return [
            Track(
                f"trackID={index}",
                codec,
                payload_type,
                fmtp if codec is H264 else codec.rtsp_fmtp,
                target.layer if codec.kind == "video" else MAIN,
            )
            for index, (codec, payload_type) in enumerate(
                zip(codecs, payload_types(codecs), strict=True)
            )
        ]

    async def _h264_fmtp(self, layer: Layer) -> str:
        """The stream's own SPS and PPS, from its next keyframe (asked for); kept a
        while, since an NVR that reconnects every few seconds would otherwise cost the
        camera a keyframe each time."""
        made, fmtp = self._fmtp.get(layer, (0.0, ""))
        if fmtp and time.monotonic() - made < PARAMETER_SETS_KEPT:
            return fmtp
        fmtp = await self._fresh_h264_fmtp(layer)
        self._fmtp[layer] = (time.monotonic(), fmtp)
        return fmtp

    async def _fresh_h264_fmtp(self, layer: Layer) -> str:
        try:
            async with asyncio.timeout(WAIT_FOR_PARAMETER_SETS):
                async with self._pipeline.stream(H264.name, layer) as subscription:
                    while True:
                        frame = await subscription.get()
                        found = {nal_type(n): n for n in nal_units(frame.data) if n}
                        if SPS in found and PPS in found:
                            return h264_fmtp(found[SPS], found[PPS])
        except (TimeoutError, SubscriptionClosed):
            raise RtspError(503, "the camera gave no picture in time; try again") from None

    async def _describe(
        self, connection: _Connection, request: Request, target: Target, principal: Principal
    ) -> Response:
        backchannel = self._backchannel_required(request, principal)
        connection.asked_for_backchannel = backchannel
        if target.control:
            raise RtspError(404, "DESCRIBE the stream, not one of its tracks")
        tracks = await self._tracks(target, describe=True)
        control = f"trackID={len(tracks)}" if backchannel else None
        sdp = session_description(tracks, connection.local, "peercam", control)
        return Response(
            200, {"Content-Type": "application/sdp", "Content-Base": target.base}, sdp.encode()
        )

    def _backchannel_required(self, request: Request, principal: Principal) -> bool:
        """Whether the request asks for the ONVIF back-channel; RtspError 551 for an
        option we do not have (RFC 2326 §12.32), or not for this account: talking
        through the door needs the admin role, as on the page."""
        tags = {t.strip() for t in request.header("require").split(",") if t.strip()}
        unknown = tags - {REQUIRE_TAG}
        if tags and self._doorbell is None:
            unknown = tags  # no speaker: no back-channel either
        elif tags and not principal.may("admin"):
            logger.info("RTSP: %s asked for the back-channel, which needs the admin role",
                        principal.name)  # fmt: skip
            unknown = tags
        if unknown:
            raise RtspError(
                551, "not supported", headers={"Unsupported": ", ".join(sorted(unknown))}
            )
        return bool(tags)

    async def _setup(
        self,
        connection: _Connection,
        request: Request,
        principal: Principal,
        target: Target,
    ) -> Response:
        control = target.control
        tracks = {t.control: t for t in await self._tracks(target, describe=False)}
        if not control:
            raise RtspError(459, "SETUP one track at a time (…/trackID=N)")
        backchannel = (
            control == f"trackID={len(tracks)}"
            and (self._backchannel_required(request, principal) or connection.asked_for_backchannel)
            and principal.may("admin")
        )
        if control not in tracks and not backchannel:
            raise RtspError(404, f"no track {control[:40]!r}")
        session_id = request.header("session").split(";")[0]
        if session_id:
            session = self._session_of(connection, request)
        else:
            scheme = request.header("authorization").partition(" ")[0].capitalize()
            session = self._new_session(connection, principal, scheme)
        if control in session.tracks or (backchannel and session.backchannel is not None):
            raise RtspError(455, f"{control} is already set up")
        if backchannel:
            return await self._setup_backchannel(connection, request, session, control)
        index = list(tracks).index(control)
        spec = choose_transport(request.header("transport"), default_channel=2 * index)
        sink: PacketSink
        if spec.tcp:
            sink = InterleavedSink(connection.writer, spec)
            server_ports = None
        else:
            udp = await UdpSink.open(
                connection.local, (connection.client, spec.first, spec.second), session.heard
            )
            sink, server_ports = udp, udp.ports
        stream = RtpStream(tracks[control].payload_type)
        session.tracks[control] = TrackOut(tracks[control], spec, sink, stream)
        headers = _session_headers(session, self.settings)
        headers["Transport"] = spec.reply(server_ports, stream.ssrc)
        return Response(200, headers)

    async def _setup_backchannel(
        self, connection: _Connection, request: Request, session: RtspSession, control: str
    ) -> Response:
        assert self._doorbell is not None
        label = f"{session.user} (NVR)"  # pages are not told the NVR's address
        receiver = Backchannel(self._doorbell, f"rtsp:{session.id}", label)
        index = int(control.removeprefix("trackID="))
        spec = choose_transport(request.header("transport"), default_channel=2 * index)
        sink: PacketSink
        if spec.tcp:
            sink, server_ports = InterleavedSink(connection.writer, spec), None
        else:
            udp = await UdpSink.open(
                connection.local, (connection.client, spec.first, spec.second), session.heard,
                receiver.receive,
            )  # fmt: skip
            sink, server_ports = udp, udp.ports
        session.backchannel = BackchannelIn(control, spec, sink, receiver)
        logger.info("RTSP session %s: the ONVIF back-channel over %s", session.id,
                    "TCP" if spec.tcp else "UDP")  # fmt: skip
        headers = _session_headers(session, self.settings)
        headers["Transport"] = spec.reply(server_ports, secrets.randbits(32))
        return Response(200, headers)

    def _new_session(
        self, connection: _Connection, principal: Principal, scheme: str
    ) -> RtspSession:
        if len(self._sessions) >= self.settings.max_sessions:
            raise RtspError(453, f"at most {self.settings.max_sessions} RTSP sessions")
        mine = sum(1 for s in self._sessions.values() if s.client == connection.client)
        if mine >= self.settings.max_sessions_per_client:
            raise RtspError(453, f"at most {self.settings.max_sessions_per_client} per client")
        session = RtspSession(self._pipeline, connection.client, principal.name)
        self._sessions[session.id] = session
        self._gauge.set(len(self._sessions))
        self._owners[session.id] = connection
        connection.sessions[session.id] = session
        logger.info("RTSP session %s for %s (%s) from %s", session.id, principal.name,
                    scheme, connection.client)  # fmt: skip
        return session

    def _session_of(self, connection: _Connection, request: Request) -> RtspSession:
        session_id = request.header("session").split(";")[0].strip()
        session = connection.sessions.get(session_id)
        if session is None:
            raise RtspError(454, "no such session on this connection")
        return session

    async def _end(self, session: RtspSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._gauge.set(len(self._sessions))
        owner = self._owners.pop(session.id, None)
        if owner is not None:
            owner.sessions.pop(session.id, None)
        await session.close()
        logger.info("RTSP session %s ended", session.id)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            limit = time.monotonic() - self.settings.session_timeout
            for session in [s for s in self._sessions.values() if s.last_heard < limit]:
                logger.info("RTSP session %s: not heard from; ending it", session.id)
                await self._end(session)


AUDIO_CHOICES = {"opus": "opus", "pcmu": "pcmu", "pcma": "pcma", "aac": "aac", "noaudio": "none"}


@dataclass(frozen=True)
class Target:
    """What a request's URL names: the stream's layer and audio choice, and a track
    (SETUP)."""

    base: str  # the aggregate URL with a trailing slash: clients append controls to it
    audio: str
    control: str  # "trackID=N", or "" for the stream itself
    layer: Layer = MAIN


def _target(uri: str, default_audio: str) -> Target:
    parts = urlsplit(uri)
    if parts.scheme not in ("rtsp", "rtsps"):
        raise RtspError(400, "not an rtsp:// URL")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or segments[0] != PATH.strip("/"):
        raise RtspError(404, f"no stream at {parts.path[:80]!r}; the stream is {PATH}")
    rest = segments[1:]
    control = rest.pop() if rest and rest[-1].startswith("trackID=") else ""
    named = len(rest)
    layer = SUB if rest and rest[0] == SUB_PATH else MAIN
    if layer == SUB:
        rest.pop(0)
    audio = default_audio
    if rest:
        if len(rest) > 1 or rest[0] not in AUDIO_CHOICES:
            raise RtspError(404, f"no stream at {parts.path[:80]!r}")
        audio = AUDIO_CHOICES[rest[0]]
    path = "/".join(["", *segments[: 1 + named]])
    return Target(f"{parts.scheme}://{parts.netloc}{path}/", audio, control, layer)


def _session_headers(session: RtspSession, settings: RtspConfig, **more: str) -> dict[str, str]:
    headers = {"Session": f"{session.id};timeout={int(settings.session_timeout)}"}
    headers.update({name.replace("_", "-"): value for name, value in more.items()})
    return headers


def build(context: OutputContext) -> list[Output]:
    if not context.config.rtsp.enabled or context.accounts is None:
        return []
    return [
        RtspServer(
            context.config, context.pipeline, context.accounts, context.metrics, context.doorbell
        )
    ]
