"""The daemon: builds the pipeline and the web server, runs until told to stop, and
then releases everything it started."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from peercam.audio.alsa_microphone import AlsaMicrophone, AlsaSettings
from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.audio.selection import choose_microphone
from peercam.audio.talkback import Talkback
from peercam.auth.authenticator import Authenticator
from peercam.auth.environment import apply_password_from_environment
from peercam.auth.passwords import WeakPassword
from peercam.auth.store import CredentialError, CredentialStore
from peercam.capture.driver_thread import DriverThread
from peercam.capture.selection import build_camera, choose_camera
from peercam.capture.source import Source
from peercam.capture.stall_watch import StallWatch
from peercam.config import Config, ConfigError
from peercam.doorbell.call import Doorbell
from peercam.doorbell.hardware import open_hardware
from peercam.encode.audio import G711AudioEncoder, OpusAudioEncoder
from peercam.encode.backend import EncoderBackend
from peercam.encode.probe import choose_h264_implementation
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.events import EventBus
from peercam.firstboot.first_boot import recorded_problems
from peercam.http.app import build_app
from peercam.http.clips_api import ClipsApi
from peercam.http.connection_guard import (
    MIN_CONNECTIONS,
    ConnectionLimits,
    GuardedListener,
    descriptor_limit,
    total_for,
)
from peercam.http.doorbell_api import DoorbellApi
from peercam.http.protocol import quiet_handlers
from peercam.http.push import PushChannel
from peercam.http.redirect import build_redirect_app
from peercam.ice.host_candidates import restrict_host_candidates, use_port_range
from peercam.ice.servers import describe_choice
from peercam.media import Kind
from peercam.metrics import Metrics
from peercam.motion.watch import MotionWatch
from peercam.outputs.catalog import build_outputs
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.recording.clip_store import ClipStore
from peercam.recording.recorder import Recorder
from peercam.rtc.registry import SessionRegistry
from peercam.service import blocking_pool
from peercam.service.notify import SystemdNotifier
from peercam.service.state_dir import state_directory
from peercam.tls.certificate import CertificateError, CertificateFiles, certificate_files

logger = logging.getLogger(__name__)


def build_pipeline(config: Config, metrics: Metrics) -> MediaPipeline:
    choice = choose_camera(config)
    logger.info(
        "camera: %s; %s at %d fps", choice.description, config.camera.size, config.camera.fps
    )
    camera = build_camera(config, choice)
    width, height = config.camera.dimensions
    sources: dict[Kind, Source[Any]] = {"video": camera}
    settings = VideoSettings(
        width,
        height,
        config.camera.fps,
        config.video.bitrate_kbps * 1000,
        config.video.keyframe_interval,
    )
    backends: dict[str, Callable[[], EncoderBackend]] = {}
    for codec in config.video.codecs:
        implementation = ""
        if codec == "h264" and camera.native_codec != "h264":
            implementation, why = choose_h264_implementation(
                config.video.h264_encoder, width, height
            )
            logger.info("software H.264: %s (%s)", implementation, why)
        backends[codec] = functools.partial(PyAVVideoEncoder, codec, settings, implementation)
    microphone = choose_microphone(config.audio)
    if microphone is not None:
        sources["audio"] = microphone
        for audio_codec in config.audio.codecs:
            if audio_codec == "opus":
                bitrate = config.audio.bitrate_kbps * 1000
                backends["opus"] = functools.partial(OpusAudioEncoder, bitrate)
            else:
                backends[audio_codec] = functools.partial(G711AudioEncoder, audio_codec)
    return MediaPipeline(
        sources,
        backends,
        metrics,
        keyframe_min_gap=config.video.keyframe_min_gap_ms / 1000,
        queue_frames=config.viewers.queue_frames,
        linger=config.camera.linger_seconds,
    )


def build_talkback(config: Config, pipeline: MediaPipeline) -> Talkback:
    settings = config.talkback
    if not settings.enabled:
        return Talkback(None, None)
    speaker = AlsaSpeaker(
        AlsaSettings(settings.device, settings.rate, settings.channels),
        jitter_ms=settings.jitter_ms,
    )
    microphone = pipeline.source("audio")
    mute = None
    if settings.half_duplex and isinstance(microphone, AlsaMicrophone):
        mic = microphone

        def mute(on: bool) -> None:
            mic.muted = on

    return Talkback(speaker, mute)


def display_url(scheme: str, host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        from aioice.ice import get_host_addresses

        addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
        host = addresses[0] if addresses else "localhost"
    return f"{scheme}://{host}:{port}/"


def open_credentials(config: Config) -> CredentialStore:
    """The credential store, with PEERCAM_PASSWORD applied. Raises ConfigError."""
    directory = state_directory(config.server.state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = CredentialStore(directory)
        apply_password_from_environment(store)
    except (CredentialError, WeakPassword) as error:
        raise ConfigError(str(error)) from None
    except OSError as error:
        raise ConfigError(f"state directory {directory}: {error.strerror or error}") from None
    return store


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = state_directory(config.server.state_dir)
        self.authenticator = Authenticator(
            open_credentials(config),
            config.auth.session_lifetime,
            config.auth.login_failures_per_minute,
            config.auth.login_failures_per_minute_total,
        )
        self.certificate: CertificateFiles | None = None
        self._tls: ssl.SSLContext | None = None
        if config.server.tls:
            try:
                self.certificate = certificate_files(
                    self.state_dir, config.server.tls_cert, config.server.tls_key
                )
                self._tls = self.certificate.server_context()
            except CertificateError as error:
                raise ConfigError(f"server.tls: {error}") from None
        self.metrics = Metrics()
        self.pipeline = build_pipeline(config, self.metrics)
        threaded = [s for s in self.pipeline.sources() if isinstance(s, DriverThread)]
        self.stall_watch = StallWatch(threaded, config.camera.stall_timeout, self.metrics)
        self.events = EventBus()
        self.talkback = build_talkback(config, self.pipeline)
        self.doorbell = Doorbell(
            self.events,
            self.talkback,
            ring_timeout=config.doorbell.ring_timeout,
            door_pulse=config.doorbell.door_pulse_ms / 1000,
        )
        self.sessions = SessionRegistry(
            config,
            self.pipeline,
            self.metrics,
            on_audio=self.talkback.listen if self.talkback.speaker else None,
            on_gone=self.doorbell.session_gone,
        )
        self.push = PushChannel(self.events, self.doorbell, self.sessions)
        self.recorder: Recorder | None = None
        clip_store: ClipStore | None = None
        recording = config.recording
        if recording.enabled:
            clip_store = ClipStore(
                self.state_dir / "clips", recording.quota_mb * 2**20, recording.min_free_mb * 2**20
            )
            self.recorder = Recorder(
                recording, self.pipeline, self.events, clip_store, config.camera.fps
            )
        self.motion: MotionWatch | None = None
        if config.motion.enabled:
            self.motion = MotionWatch(
                config.motion, self.pipeline, self.events, on_continuing=self._motion_goes_on
            )
        self.app = build_app(
            config,
            self.sessions,
            self.metrics,
            self.authenticator,
            self.push,
            DoorbellApi(self.doorbell),
            ClipsApi(self.pipeline, clip_store, self.recorder, self.motion is not None),
            notices=lambda: recorded_problems(self.state_dir),
        )
        self._runner: web.AppRunner | None = None
        self._redirect_runner: web.AppRunner | None = None
        self._listeners: list[GuardedListener] = []
        self.http_port: int | None = None
        # The recorder and motion are built here: the clips API and each other use them.
        local: list[Output] = [o for o in (self.recorder, self.motion) if o is not None]
        self.outputs = [
            *build_outputs(OutputContext(config, self.pipeline, self.events)),
            *local,
        ]
        self._started: list[Output] = []
        self.port: int | None = None

    def _motion_goes_on(self) -> None:
        if self.recorder is not None:
            self.recorder.extend()

    async def start(self) -> str:
        self.stall_watch.start()
        for output in self.outputs:
            await output.start()
            self._started.append(output)
            logger.info("%s started", output.name)
        # gpiozero's callbacks need the running loop to hand their events to.
        self.doorbell.hardware = open_hardware(
            self.config.gpio, self.doorbell.ring, self.doorbell.motion
        )
        server = self.config.server
        context = self._tls
        limits = self._connection_limits()
        self._runner = web.AppRunner(self.app, handle_signals=False)
        self.port = await self._listen(self._runner, server.port, limits, context)
        if context is not None and server.redirect_http:
            self._redirect_runner = web.AppRunner(
                build_redirect_app(self.port), handle_signals=False
            )
            # It only answers with a redirect: a small share of the descriptors.
            small = ConnectionLimits(MIN_CONNECTIONS, limits.per_address, limits.handshake_timeout)
            self.http_port = await self._listen(self._redirect_runner, server.http_port, small)
        return display_url("https" if context else "http", server.host, self.port)

    def _connection_limits(self) -> ConnectionLimits:
        server = self.config.server
        descriptors = descriptor_limit()
        total = server.max_connections or total_for(descriptors, self.config.viewers.max_viewers)
        logger.info(
            "HTTP connections: at most %d (%d per address) with %d descriptors",
            total, server.max_connections_per_address, descriptors,
        )  # fmt: skip
        return ConnectionLimits(
            total, server.max_connections_per_address, server.tls_handshake_timeout
        )

    async def _listen(
        self,
        runner: web.AppRunner,
        port: int,
        limits: ConnectionLimits,
        context: ssl.SSLContext | None = None,
    ) -> int:
        """Serve `runner` on the configured host and `port` (0 picks one); the port bound."""
        await runner.setup()
        server = runner.server
        assert server is not None  # made by setup()
        # aiohttp's keep-alive timeout also runs from a connection's start: it bounds
        # the wait for a complete first request as well as idle time between requests.
        protocols = quiet_handlers(
            server, access_log=None, keepalive_timeout=self.config.server.request_timeout
        )
        refused = self.metrics.connections_refused
        listener = GuardedListener(
            protocols, limits, context, lambda reason: refused.labels(reason).inc()
        )
        self._listeners.append(listener)
        return await listener.start(self.config.server.host, port)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()
        await self.stall_watch.stop()
        await self.push.close_all()
        await self.sessions.close_all()
        await self.doorbell.close()
        await self.pipeline.stop()
        for listener in self._listeners:
            await listener.stop()
        self._listeners = []
        for runner in (self._redirect_runner, self._runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._redirect_runner = None


async def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code."""
    loop = asyncio.get_running_loop()
    blocking_pool.install(loop)
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        daemon = Daemon(config)
    except ConfigError as error:
        # Camera settings can only be checked against the camera found at start.
        print(f"peercam: config error: {error}", file=sys.stderr)
        return 2
    try:
        url = await daemon.start()
    except OSError as error:
        logger.error(
            "cannot listen on %s:%s: %s",
            config.server.host,
            config.server.port,
            error.strerror or error,
        )
        await daemon.stop()
        return 1
    logger.info("ICE: %s", describe_choice(config.webrtc))
    restrict_host_candidates(config.webrtc.interfaces)
    use_port_range(*config.webrtc.port_range)
    if daemon.certificate is not None and daemon.certificate.self_signed:
        logger.info(
            "self-signed certificate, SHA-256 %s: check it when the browser asks",
            daemon.certificate.fingerprint(),
        )
    if daemon.authenticator.setup_needed():
        logger.warning(
            "no admin password is set, so the camera shows nothing yet: run "
            "`peercam passwd`, or set PEERCAM_PASSWORD"
        )
    elif not config.server.tls:
        logger.warning(
            "TLS is off: only safe behind a reverse proxy that does HTTPS; browsers keep "
            "no login cookie and give no microphone to a plain-HTTP page"
        )
    # The redirect first: the "serving" line tells whoever waits that all is up.
    if daemon.http_port is not None:
        redirect = display_url("http", config.server.host, daemon.http_port)
        print(f"peercam: redirecting {redirect} to HTTPS", flush=True)
    print(f"peercam: serving on {url}", flush=True)
    notifier = SystemdNotifier()
    notifier.ready(f"serving on {url}")
    await stopping.wait()
    logger.info("stopping")
    await notifier.stopping()
    await daemon.stop()
    leftover = await _settle_tasks()
    if leftover:
        logger.warning("tasks left at exit: %s", ", ".join(sorted(leftover)))
    else:
        logger.info("stopped cleanly: no tasks left")
    return 0


async def _settle_tasks(patience: float = 2.0) -> list[str]:
    """Give tasks that are finishing (peer connections closing) a moment, then report
    any that are still alive."""
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not others or asyncio.get_running_loop().time() > deadline:
            return [t.get_name() + ":" + repr(t.get_coro()) for t in others]
        await asyncio.sleep(0.05)
