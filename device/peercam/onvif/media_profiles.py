"""What both ONVIF media services (Media, ver10; Media2, ver20) describe: a profile per
stream the RTSP server serves — "main" (H.264 at the camera's size and rate) and, where
the camera has a small stream, "sub" (for an NVR's detection) — with the microphone
when /live carries G.711, the speaker when the RTSP server takes audio back, and the
configurations the two services write alike (the tt: types they share).

Read-only: the settings live in peercam.toml, and a second writer would fight it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peercam.config import Config
from peercam.media import MAIN, SUB, Layer
from peercam.onvif.soap import SoapFault, SoapRequest, element, text

VIDEO_SOURCE = "VideoSource_1"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"
AUDIO_SOURCE = "AudioSource_1"
AUDIO_SOURCE_CONFIG = "AudioSourceConfig_1"
AUDIO_ENCODER = "AudioEncoder_1"
# The speaker, which the RTSP back-channel talks through (rtsp/backchannel.py).
AUDIO_OUTPUT = "AudioOutput_1"
AUDIO_OUTPUT_CONFIG = "AudioOutputConfig_1"
AUDIO_DECODER = "AudioDecoder_1"
G711_LAWS = ("pcmu", "pcma")
G711_BITRATE = 64  # kbit/s: 8 bits at 8 kHz
G711_RATE = 8  # kHz, as both services count it


@dataclass(frozen=True)
class MediaUrls:
    """Where this client reaches the streams: built from the address it used."""

    stream: str  # rtsp://host:port/live; a smaller stream's path is below it
    snapshot: str  # http://host:port/onvif/snapshot.jpg


@dataclass(frozen=True)
class MediaStream:
    """One profile: an H.264 stream of the RTSP server and its encoder configuration."""

    profile: str  # the profile's token
    name: str
    encoder: str  # its video encoder configuration's token
    path: str  # below MediaUrls.stream: "" for /live, "/sub" for /live/sub
    layer: Layer  # the encode it is, in the pipeline
    width: int
    height: int
    fps: int
    bitrate: int  # kbit/s
    gov: int  # frames from one keyframe to the next


def media_streams(config: Config) -> tuple[MediaStream, ...]:
    """Main first: clients that take one profile take the first, and it is the largest."""
    width, height = config.camera.dimensions
    interval = config.video.keyframe_interval
    fps = config.camera.fps
    main = MediaStream(
        "main", "Main stream", "VideoEncoder_1", "", MAIN, width, height, fps,
        config.video.bitrate_kbps, max(1, round(interval * fps)),
    )  # fmt: skip
    small = config.small_stream
    if small is None:
        return (main,)
    sub = MediaStream(
        "sub", "Small stream", "VideoEncoder_2", "/sub", SUB, small.width, small.height,
        small.fps, small.bitrate // 1000, max(1, round(interval * small.fps)),
    )  # fmt: skip
    return (main, sub)


class MediaProfiles:
    """The camera's profiles and the configurations every profile shares."""

    def __init__(self, config: Config, speaker: bool) -> None:
        """`speaker`: the camera takes audio back (the RTSP back-channel)."""
        self.streams = media_streams(config)
        self.speaker = speaker
        self.width, self.height = config.camera.dimensions
        self.fps = config.camera.fps
        law = config.rtsp.audio
        # /live carries the microphone only as G.711 (rtsp/describe.py).
        self.g711: str | None = law if config.audio.enabled and law in G711_LAWS else None

    @property
    def audio(self) -> bool:
        return self.g711 is not None

    def stream_of(self, request: SoapRequest) -> MediaStream:
        """The stream whose profile the request names; ter:NoProfile if none."""
        return self._named(request, "ProfileToken", lambda s: s.profile, "ter:NoProfile")

    def encoder_of(self, request: SoapRequest) -> MediaStream:
        """The stream whose encoder configuration it names; ter:NoConfig if none."""
        return self._named(request, "ConfigurationToken", lambda s: s.encoder, "ter:NoConfig")

    def _named(
        self, request: SoapRequest, field: str, token_of: Callable[[MediaStream], str], fault: str
    ) -> MediaStream:
        token = request.find_text(field)
        for stream in self.streams:
            if token_of(stream) == token:
                return stream
        raise SoapFault(400, "Sender", fault, f"no {field[:-5].lower()} {str(token)[:40]!r}")

    # -- the tt: configurations both services write --------------------------------

    def _shared(self, name: str, token: str, *content: str) -> str:
        """A configuration every profile carries (the camera, the microphone, the
        speaker): its UseCount counts them."""
        return configuration(name, token, len(self.streams), *content)

    def video_source_config(self, name: str) -> str:
        return self._shared(
            name,
            VIDEO_SOURCE_CONFIG,
            text("tt:SourceToken", VIDEO_SOURCE),
            element("tt:Bounds", x=0, y=0, width=self.width, height=self.height),
        )

    def audio_source_config(self, name: str) -> str:
        return self._shared(name, AUDIO_SOURCE_CONFIG, text("tt:SourceToken", AUDIO_SOURCE))

    def audio_output(self, name: str) -> str:
        return self._shared(
            name,
            AUDIO_OUTPUT_CONFIG,
            text("tt:OutputToken", AUDIO_OUTPUT),
            text("tt:OutputLevel", 100),
        )

    def audio_decoder(self, name: str) -> str:
        return self._shared(name, AUDIO_DECODER)


def no_multicast() -> str:
    return element(
        "tt:Multicast",
        element("tt:Address", text("tt:Type", "IPv4"), text("tt:IPv4Address", "0.0.0.0")),
        text("tt:Port", 0),
        text("tt:TTL", 1),
        text("tt:AutoStart", False),
    )


def configuration(name: str, token: str, use_count: int, *content: str, **attrs: object) -> str:
    """A tt:ConfigurationEntity: its name (here its token too), the profiles using it."""
    return element(
        name, text("tt:Name", token), text("tt:UseCount", use_count), *content, token=token, **attrs
    )
