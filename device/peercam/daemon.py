"""The daemon: builds the pipeline and the web server, runs until told to stop, and
then releases everything it started."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web

from peercam.audio.alsa_microphone import AlsaMicrophone, AlsaSettings
from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.audio.talkback import Talkback
from peercam.auth.authenticator import Authenticator
from peercam.auth.environment import apply_password_from_environment
from peercam.auth.local_check import LocalCheckKey
from peercam.auth.passwords import WeakPassword
from peercam.auth.setup_code import SetupCode, shown
from peercam.auth.store import CredentialError, CredentialStore, open_store
from peercam.capture.driver_thread import DriverThread
from peercam.capture.stall_watch import StallWatch
from peercam.config import Config, ConfigError
from peercam.doorbell.call import Doorbell
from peercam.doorbell.commands import DoorbellCommands
from peercam.doorbell.hardware import open_hardware
from peercam.echo.canceller import build_echo_canceller
from peercam.events import EventBus
from peercam.firstboot.first_boot import recorded_problems
from peercam.http.accounts_api import AccountsApi
from peercam.http.app import RouteGroup, build_app
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
from peercam.http.settings_api import RunInfo, SettingsApi
from peercam.http.update_api import UpdateApi
from peercam.ice.host_candidates import restrict_host_candidates, use_port_range
from peercam.ice.servers import describe_choice
from peercam.metrics import Metrics
from peercam.outputs.catalog import build_outputs
from peercam.outputs.output import LiveSettings, Output, OutputContext
from peercam.pipeline import MediaPipeline, build_pipeline, build_video
from peercam.recording.recorder import Recorder
from peercam.rtc.registry import SessionRegistry
from peercam.service import blocking_pool
from peercam.service.addresses import display_url
from peercam.service.notify import SystemdNotifier
from peercam.service.state_dir import state_directory
from peercam.settings.config_file import ConfigFile
from peercam.settings.impact import Impact
from peercam.tls.certificate import CertificateError, CertificateFiles, certificate_files
from peercam.viewer_channel.server import ChannelServices, ViewerChannels

logger = logging.getLogger(__name__)

# Seconds between a saved setting's answer and the restart it needs: the page gets
# its answer (and says what happens) before the connection goes.
RESTART_DELAY = 0.3
# The environment's own TZ, back when the setting is cleared.
_STARTED_WITH_TZ = os.environ.get("TZ")


def build_talkback(config: Config, pipeline: MediaPipeline) -> Talkback:
    settings = config.talkback
    if not settings.enabled:
        return Talkback(None, None)
    microphone = pipeline.source("audio")
    echo = build_echo_canceller(settings, microphone)
    speaker = AlsaSpeaker(
        AlsaSettings(settings.device, settings.rate, settings.channels),
        jitter_ms=settings.jitter_ms,
        on_played=echo.reference.played if echo is not None else None,
    )
    if echo is not None and isinstance(microphone, AlsaMicrophone):
        microphone.processor = echo.process
    mute = None
    if settings.half_duplex and isinstance(microphone, AlsaMicrophone):
        mic = microphone

        def mute(on: bool) -> None:
            mic.muted = on

    return Talkback(speaker, mute)


def open_credentials(config: Config) -> CredentialStore:
    """The credential store, with PEERCAM_PASSWORD applied. Raises ConfigError."""
    try:
        store = open_store(state_directory(config.server.state_dir))
        apply_password_from_environment(store)
    except (CredentialError, WeakPassword) as error:
        raise ConfigError(str(error)) from None
    return store


@dataclass
class Parts:
    """What a started daemon is made of."""

    authenticator: Authenticator
    pipeline: MediaPipeline
    events: EventBus
    talkback: Talkback
    doorbell: Doorbell
    sessions: SessionRegistry
    outputs: list[Output]
    app: web.Application


class Daemon:
    """Builds nothing until `start`: each step there (credentials, certificate, camera,
    outputs, listening) can fail, and whatever was started before it is then released
    by `stop`, in reverse order."""

    def __init__(
        self,
        config: Config,
        settings_file: ConfigFile | None = None,
        restart: Callable[[Config], None] | None = None,
        rolled_back: str | None = None,
    ) -> None:
        """`settings_file`: where the settings page saves (none: no settings page);
        `restart`: asks the caller to restart the daemon in place on a new config;
        `rolled_back`: why the settings saved last are not the ones it runs on."""
        self.config = config
        self.rolled_back = rolled_back
        # Tells the settings page one run of the daemon from the next.
        self.run_id = secrets.token_hex(8)
        self.settings_file = settings_file
        self._restart = restart
        self.state_dir = state_directory(config.server.state_dir)
        self.metrics = Metrics()
        self.certificate: CertificateFiles | None = None
        self._parts: Parts | None = None
        self._releases = AsyncExitStack()
        self._listeners: list[GuardedListener] = []
        self._runners: list[web.AppRunner] = []
        self.port: int | None = None
        self.http_port: int | None = None

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("the daemon is not started")
        return self._parts

    @property
    def pipeline(self) -> MediaPipeline:
        return self.parts.pipeline

    @property
    def sessions(self) -> SessionRegistry:
        return self.parts.sessions

    @property
    def talkback(self) -> Talkback:
        return self.parts.talkback

    @property
    def authenticator(self) -> Authenticator:
        return self.parts.authenticator

    async def start(self) -> str:
        """Raises ConfigError (settings that do not fit this machine) or OSError (a
        port that cannot be bound); call `stop` either way."""
        config = self.config
        release = self._releases
        # Registered first so it runs last: open pages and peers close before the
        # server under them does.
        release.push_async_callback(self._stop_listening)
        # Before READY=1: the updater's self-check reads it once systemd says ready.
        local_check = LocalCheckKey(self.state_dir, config.server.host)
        await asyncio.to_thread(local_check.renew)
        authenticator = Authenticator(
            await asyncio.to_thread(open_credentials, config),
            config.auth.session_lifetime,
            config.auth.login_failures_per_minute,
            config.auth.login_failures_per_minute_total,
            local_check,
        )
        setup_code = SetupCode(self.state_dir)
        if authenticator.setup_needed():
            # Before serving: the setup page asks for it from the first request on.
            await asyncio.to_thread(setup_code.ensure)
        tls = await asyncio.to_thread(self._tls_context)
        # Finding the camera probes the hardware (libcamera, V4L2 devices, encoders):
        # blocking calls, kept off the loop.
        pipeline = await asyncio.to_thread(build_pipeline, config, self.metrics)
        release.push_async_callback(pipeline.stop)
        stall_watch = StallWatch(
            lambda: [s for s in pipeline.sources() if isinstance(s, DriverThread)],
            config.camera.stall_timeout,
            self.metrics,
        )
        stall_watch.start()
        release.push_async_callback(stall_watch.stop)
        events = EventBus()
        talkback = build_talkback(config, pipeline)
        doorbell = Doorbell(
            events,
            talkback,
            ring_timeout=config.doorbell.ring_timeout,
            door_pulse=config.doorbell.door_pulse_ms / 1000,
        )
        release.push_async_callback(doorbell.close)
        sessions = SessionRegistry(
            config,
            pipeline,
            self.metrics,
            on_audio=talkback.listen if talkback.speaker else None,
            on_gone=doorbell.session_gone,
        )
        release.push_async_callback(sessions.close_all)
        push = PushChannel(events, doorbell, sessions)
        release.push_async_callback(push.close_all)
        outputs = build_outputs(
            OutputContext(config, pipeline, events, self.metrics, doorbell, authenticator, sessions)
        )
        for output in outputs:
            # Registered first: a start that fails part-way is undone by its stop.
            release.push_async_callback(output.stop)
            try:
                await output.start()
            except OSError as error:  # a file it keeps, a device: not a port to listen on
                raise ConfigError(f"{output.name}: {error.strerror or error}") from None
            logger.info("%s started", output.name)
        recorder = next((o for o in outputs if isinstance(o, Recorder)), None)
        channels = ViewerChannels(
            ChannelServices(
                events, doorbell, DoorbellCommands(doorbell), pipeline, recorder,
                config.motion.enabled, authenticator.role_of,
            )
        )  # fmt: skip
        sessions.on_channel = channels.serve
        app = build_app(
            config,
            sessions,
            self.metrics,
            authenticator,
            push,
            DoorbellApi(doorbell),
            ClipsApi(pipeline, recorder, config.motion.enabled),
            AccountsApi(authenticator),
            UpdateApi(config),
            *self._settings_api(),
            *(output for output in outputs if isinstance(output, RouteGroup)),
            setup_code=setup_code,
            notices=lambda: recorded_problems(self.state_dir),
        )
        self._parts = Parts(
            authenticator, pipeline, events, talkback, doorbell, sessions, outputs, app
        )
        # gpiozero's callbacks need the running loop to hand their events to.
        doorbell.hardware = open_hardware(config.gpio, doorbell.ring, doorbell.motion)
        server = config.server
        limits = self._connection_limits()
        self.port = await self._listen(app, server.port, limits, tls)
        if tls is not None and server.redirect_http:
            # It only answers with a redirect: a small share of the descriptors.
            small = ConnectionLimits(MIN_CONNECTIONS, limits.per_address, limits.handshake_timeout)
            self.http_port = await self._listen(
                build_redirect_app(self.port), server.http_port, small
            )
        return display_url("https" if tls else "http", server.host, self.port)

    def _settings_api(self) -> list[RouteGroup]:
        if self.settings_file is None:
            return []
        return [
            SettingsApi(
                self.settings_file, lambda: self.config, self._apply_settings,
                lambda: self.certificate.fingerprint() if self.certificate else None,
                RunInfo(self.run_id, self.rolled_back),
            )
        ]  # fmt: skip

    async def _apply_settings(self, config: Config, impact: Impact) -> None:
        """Settings saved from the page: taken live, or a restart in place, asked for
        once the page has its answer."""
        if impact is Impact.CAMERA:
            try:
                video = await asyncio.to_thread(build_video, config)
                await self.parts.pipeline.replace_camera(
                    video.camera, video.backends, video.extra_layers
                )
            except (ConfigError, ValueError) as error:
                # The restart tries it whole, and goes back to the old file if it fails.
                logger.warning("the camera's new settings: %s; restarting instead", error)
                impact = Impact.RESTART
        if impact is not Impact.RESTART:
            self.config = config
            for output in self.parts.outputs:
                if isinstance(output, LiveSettings):
                    output.apply_settings(config)
            return
        if self._restart is not None:
            asyncio.get_running_loop().call_later(RESTART_DELAY, self._restart, config)

    def _tls_context(self) -> ssl.SSLContext | None:
        server = self.config.server
        if not server.tls:
            return None
        try:
            self.certificate = certificate_files(self.state_dir, server.tls_cert, server.tls_key)
            return self.certificate.server_context()
        except CertificateError as error:
            raise ConfigError(f"server.tls: {error}") from None

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
        app: web.Application,
        port: int,
        limits: ConnectionLimits,
        context: ssl.SSLContext | None = None,
    ) -> int:
        """Serve `app` on the configured host and `port` (0 picks one); the port bound."""
        runner = web.AppRunner(app, handle_signals=False)
        self._runners.append(runner)
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

    async def _stop_listening(self) -> None:
        for listener in self._listeners:
            await listener.stop()
        self._listeners = []
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners = []

    async def stop(self) -> None:
        """Release what `start` started, in reverse; also after a failed start. Every
        step runs even when one before it fails (that one is logged)."""
        try:
            await self._releases.aclose()
        except Exception:
            logger.exception("stopping: a part failed to stop; the rest were stopped")
        finally:
            self._parts = None


def use_time_zone(zone: str | None) -> None:
    """The process's local time (its log, what ONVIF tells NVRs) in `zone`; the
    system's own is set by `peercam firstboot` at the next start."""
    chosen = zone or _STARTED_WITH_TZ
    if chosen is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = chosen
    time.tzset()
    if zone is not None:
        logger.info("time zone %s (UTC%s)", zone, time.strftime("%z"))


class _Restarts:
    """A restart in place asked for by a saved setting: the config to restart on."""

    def __init__(self) -> None:
        self.wanted = asyncio.Event()
        self.config: Config | None = None

    def request(self, config: Config) -> None:
        self.config = config
        self.wanted.set()

    def take(self) -> Config:
        assert self.config is not None
        config, self.config = self.config, None
        self.wanted.clear()
        return config


async def _start(daemon: Daemon) -> str | tuple[int, str]:
    """The daemon's URL, or (exit code, why) with what did start released."""
    config = daemon.config
    try:
        return await daemon.start()
    except ConfigError as error:
        # Camera settings can only be checked against the camera found at start.
        await daemon.stop()
        return 2, f"config error: {error}"
    except OSError as error:
        await daemon.stop()
        where = f"{config.server.host}:{config.server.port}"
        return 1, f"cannot listen on {where}: {error.strerror or error}"
    except BaseException:
        # A fault of the daemon's own: what did start is released before it is told.
        await daemon.stop()
        raise


def _announce(daemon: Daemon, url: str) -> None:
    config = daemon.config
    logger.info("ICE: %s", describe_choice(config.webrtc))
    restrict_host_candidates(config.webrtc.interfaces)
    use_port_range(*config.webrtc.port_range)
    if daemon.certificate is not None and daemon.certificate.self_signed:
        logger.info(
            "self-signed certificate, SHA-256 %s: check it when the browser asks",
            daemon.certificate.fingerprint(),
        )
    code = SetupCode(daemon.state_dir).current()
    if daemon.authenticator.setup_needed() and code is not None:
        logger.warning(
            "no admin password is set, so the camera shows nothing yet: open %s and enter "
            "the setup code %s (or run `peercam passwd`, or set PEERCAM_PASSWORD)",
            url,
            shown(code),
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


def _same_ports(config: Config, before: Daemon) -> Config:
    """`config` listening where `before` did when both ask for "any port" (0): a
    page that was open reconnects to the same address."""
    server, old = config.server, before.config.server
    update: dict[str, int] = {}
    if server.port == 0 and old.port == 0 and before.port is not None:
        update["port"] = before.port
    if server.http_port == 0 and old.http_port == 0 and before.http_port is not None:
        update["http_port"] = before.http_port
    if not update:
        return config
    return config.model_copy(update={"server": server.model_copy(update=update)})


async def serve(config: Config, settings_file: ConfigFile | None = None) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code. A setting saved from
    the page that needs it restarts the daemon in place; if it cannot start on the
    new settings, the previous file and settings come back."""
    loop = asyncio.get_running_loop()
    blocking_pool.install(loop)
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    restarts = _Restarts()
    notifier = SystemdNotifier()
    working: Config | None = None  # the last settings the daemon started on
    working_file: bytes | None = None  # and the file they came from
    rolled_back: str | None = None
    while True:
        use_time_zone(config.server.time_zone)
        daemon = Daemon(config, settings_file, restarts.request, rolled_back)
        started = await _start(daemon)
        if isinstance(started, tuple):
            code, why = started
            if working is None or settings_file is None:
                print(f"peercam: {why}", file=sys.stderr)
                return code
            logger.error("the new settings did not start (%s): back to the previous ones", why)
            await asyncio.to_thread(settings_file.put_back, working_file)
            config, working = working, None
            rolled_back = f"the new settings did not start ({why}); the previous ones are back"
            continue
        working = config
        if settings_file is not None:
            working_file = await asyncio.to_thread(settings_file.snapshot)
        _announce(daemon, started)
        notifier.ready(f"serving on {started}")
        stop_wait = asyncio.ensure_future(stopping.wait())
        restart_wait = asyncio.ensure_future(restarts.wanted.wait())
        try:
            await asyncio.wait({stop_wait, restart_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (stop_wait, restart_wait):
                waiting.cancel()
            await asyncio.gather(stop_wait, restart_wait, return_exceptions=True)
        if stopping.is_set():
            break
        logger.warning("restarting in place on the new settings")
        await daemon.stop()
        # Both on the ports this one had: the new settings, and the old if they fail.
        working = _same_ports(config, daemon)
        config = restarts.take()
        rolled_back = None
        if settings_file is not None:
            # The file as it is now: a live change saved after the restart was asked
            # for is in it too.
            try:
                config = await asyncio.to_thread(settings_file.load)
            except ConfigError as error:
                logger.error("cannot read the settings again (%s): using those saved", error)
        config = _same_ports(config, daemon)
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
