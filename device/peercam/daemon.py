"""The daemon: builds the pipeline and the web server, runs until told to stop, and
then releases everything it started."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from peercam.audio.alsa_microphone import AlsaMicrophone, AlsaSettings
from peercam.audio.alsa_speaker import AlsaSpeaker
from peercam.audio.selection import choose_microphone
from peercam.audio.talkback import Talkback
from peercam.capture.selection import build_camera, choose_camera
from peercam.capture.source import Source
from peercam.config import Config, ConfigError
from peercam.doorbell.call import Doorbell
from peercam.doorbell.hardware import open_hardware
from peercam.encode.audio import G711AudioEncoder, OpusAudioEncoder
from peercam.encode.backend import EncoderBackend
from peercam.encode.probe import choose_h264_implementation
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.events import EventBus
from peercam.http.app import build_app
from peercam.http.doorbell_api import DoorbellApi
from peercam.http.push import PushChannel
from peercam.ice.host_candidates import restrict_host_candidates, use_port_range
from peercam.ice.servers import describe_choice
from peercam.media import Kind
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline
from peercam.republish.rtp_forward import RtpForwarder
from peercam.republish.whip_publisher import WhipPublisher
from peercam.rtc.registry import SessionRegistry
from peercam.service.notify import SystemdNotifier

logger = logging.getLogger(__name__)


def build_pipeline(config: Config, metrics: Metrics) -> MediaPipeline:
    choice = choose_camera(config)
    logger.info("camera: %s", choice.description)
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


def display_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        from aioice.ice import get_host_addresses

        addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
        host = addresses[0] if addresses else "localhost"
    return f"http://{host}:{port}/"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.pipeline = build_pipeline(config, self.metrics)
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
        self.app = build_app(
            config, self.sessions, self.metrics, self.push, DoorbellApi(self.doorbell)
        )
        self._runner: web.AppRunner | None = None
        self.publishers: list[WhipPublisher] = []
        self.forwarders: list[RtpForwarder] = []
        self.port: int | None = None

    async def start(self) -> str:
        for target in self.config.republish.whip:
            publisher = WhipPublisher(target, self.pipeline, self.config.webrtc)
            publisher.start()
            self.publishers.append(publisher)
        for rtp_target in self.config.republish.rtp:
            forwarder = RtpForwarder(rtp_target, self.pipeline)
            await forwarder.start()
            self.forwarders.append(forwarder)
        # gpiozero's callbacks need the running loop to hand their events to.
        self.doorbell.hardware = open_hardware(
            self.config.gpio, self.doorbell.ring, self.doorbell.motion
        )
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.server.host, self.config.server.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", [])
        self.port = sockets[0].getsockname()[1] if sockets else self.config.server.port
        return display_url(self.config.server.host, self.port)

    async def stop(self) -> None:
        for publisher in self.publishers:
            await publisher.stop()
        for forwarder in self.forwarders:
            await forwarder.stop()
        await self.push.close_all()
        await self.sessions.close_all()
        await self.doorbell.close()
        await self.pipeline.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code."""
    loop = asyncio.get_running_loop()
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
