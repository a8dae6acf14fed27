"""ONVIF Media (ver10), read-only: a profile per stream the RTSP server serves — "main"
(H.264 at the camera's size and rate) and, where the camera has a small stream,
"sub" (for an NVR's detection) — both with G.711 when /live carries it, their RTSP
URLs and the snapshot URL. Configurations cannot be changed here: the settings live
in peercam.toml, and a second writer would fight it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peercam.config import Config
from peercam.onvif.soap import SoapFault, SoapRequest, action_not_supported, element, text

VIDEO_SOURCE = "VideoSource_1"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"
AUDIO_SOURCE = "AudioSource_1"
AUDIO_SOURCE_CONFIG = "AudioSourceConfig_1"
AUDIO_ENCODER = "AudioEncoder_1"
# The speaker, which the RTSP back-channel talks through (rtsp/backchannel.py).
AUDIO_OUTPUT = "AudioOutput_1"
AUDIO_OUTPUT_CONFIG = "AudioOutputConfig_1"
AUDIO_DECODER = "AudioDecoder_1"
G711 = {"pcmu": "G711", "pcma": "G711"}  # ONVIF has one name for both laws


@dataclass(frozen=True)
class MediaUrls:
    """Where this client reaches the streams: built from the address it used."""

    stream: str  # rtsp://host:port/live; a smaller stream's path is below it
    snapshot: str  # http://host:port/onvif/snapshot.jpg


@dataclass(frozen=True)
class _Stream:
    """One profile: an H.264 stream of the RTSP server and its encoder configuration."""

    profile: str  # the profile's token
    name: str
    encoder: str  # its VideoEncoderConfiguration's token
    path: str  # below MediaUrls.stream: "" for /live, "/sub" for /live/sub
    width: int
    height: int
    fps: int
    bitrate: int  # kbit/s
    gov: int  # frames from one keyframe to the next


def _streams(config: Config) -> tuple[_Stream, ...]:
    """Main first: clients that take one profile take the first, and it is the largest."""
    width, height = config.camera.dimensions
    interval = config.video.keyframe_interval
    fps = config.camera.fps
    main = _Stream(
        "main", "Main stream", "VideoEncoder_1", "", width, height, fps,
        config.video.bitrate_kbps, max(1, round(interval * fps)),
    )  # fmt: skip
    small = config.small_stream
    if small is None:
        return (main,)
    sub = _Stream(
        "sub", "Small stream", "VideoEncoder_2", "/sub", small.width, small.height, small.fps,
        small.bitrate // 1000, max(1, round(interval * small.fps)),
    )  # fmt: skip
    return (main, sub)


class MediaService:
    def __init__(self, config: Config, speaker: bool) -> None:
        """`speaker`: the camera takes audio back (the RTSP back-channel)."""
        self._speaker = speaker
        self._streams = _streams(config)
        self._width, self._height = config.camera.dimensions
        self._fps = config.camera.fps
        audio = config.rtsp.audio
        self._audio = config.audio.enabled and audio in G711
        self._audio_bitrate = 64  # kbit/s: G.711 at 8 kHz
        self._operations: dict[str, Callable[[SoapRequest, MediaUrls], str]] = {
            "GetServiceCapabilities": self._capabilities,
            "GetProfiles": lambda r, u: element(
                "trt:GetProfilesResponse",
                *(self._profile("trt:Profiles", s) for s in self._streams),
            ),
            "GetProfile": lambda r, u: element(
                "trt:GetProfileResponse", self._profile("trt:Profile", self._stream_of(r))
            ),
            "GetVideoSources": lambda r, u: element(
                "trt:GetVideoSourcesResponse", self._video_source()
            ),
            "GetVideoSourceConfigurations": lambda r, u: element(
                "trt:GetVideoSourceConfigurationsResponse",
                self._video_source_config("trt:Configurations"),
            ),
            "GetVideoSourceConfiguration": lambda r, u: element(
                "trt:GetVideoSourceConfigurationResponse",
                self._video_source_config("trt:Configuration"),
            ),
            "GetVideoEncoderConfigurations": lambda r, u: element(
                "trt:GetVideoEncoderConfigurationsResponse",
                *(self._video_encoder("trt:Configurations", s) for s in self._streams),
            ),
            "GetVideoEncoderConfiguration": lambda r, u: element(
                "trt:GetVideoEncoderConfigurationResponse",
                self._video_encoder("trt:Configuration", self._encoder_of(r)),
            ),
            "GetCompatibleVideoEncoderConfigurations": lambda r, u: element(
                "trt:GetCompatibleVideoEncoderConfigurationsResponse",
                self._video_encoder("trt:Configurations", self._stream_of(r)),
            ),
            "GetVideoEncoderConfigurationOptions": lambda r, u: element(
                "trt:GetVideoEncoderConfigurationOptionsResponse", self._options(r)
            ),
            "GetGuaranteedNumberOfVideoEncoderInstances": lambda r, u: element(
                "trt:GetGuaranteedNumberOfVideoEncoderInstancesResponse",
                text("trt:TotalNumber", len(self._streams)),
                text("trt:H264", len(self._streams)),
            ),
            "GetAudioSources": lambda r, u: element(
                "trt:GetAudioSourcesResponse",
                element("trt:AudioSources", text("tt:Channels", 1), token=AUDIO_SOURCE)
                if self._audio
                else "",
            ),
            "GetAudioSourceConfigurations": lambda r, u: element(
                "trt:GetAudioSourceConfigurationsResponse",
                self._audio_source_config("trt:Configurations") if self._audio else "",
            ),
            "GetAudioEncoderConfigurations": lambda r, u: element(
                "trt:GetAudioEncoderConfigurationsResponse",
                self._audio_encoder("trt:Configurations") if self._audio else "",
            ),
            "GetAudioOutputs": lambda r, u: element(
                "trt:GetAudioOutputsResponse",
                element("trt:AudioOutputs", token=AUDIO_OUTPUT) if self._speaker else "",
            ),
            "GetAudioOutputConfigurations": lambda r, u: element(
                "trt:GetAudioOutputConfigurationsResponse",
                self._audio_output("trt:Configurations") if self._speaker else "",
            ),
            "GetAudioDecoderConfigurations": lambda r, u: element(
                "trt:GetAudioDecoderConfigurationsResponse",
                self._audio_decoder("trt:Configurations") if self._speaker else "",
            ),
            "GetStreamUri": self._stream_uri,
            "GetSnapshotUri": self._snapshot_uri,
        }

    async def answer(self, request: SoapRequest, urls: MediaUrls) -> str:
        operation = self._operations.get(request.operation)
        if operation is None:
            raise action_not_supported(request.operation)
        return operation(request, urls)

    def _capabilities(self, request: SoapRequest, urls: MediaUrls) -> str:
        return element(
            "trt:GetServiceCapabilitiesResponse",
            element(
                "trt:Capabilities",
                element("trt:ProfileCapabilities", MaximumNumberOfProfiles=len(self._streams)),
                element(
                    "trt:StreamingCapabilities",
                    RTPMulticast=False,
                    RTP_TCP=True,
                    RTP_RTSP_TCP=True,
                    NonAggregateControl=False,
                    NoRTSPStreaming=False,
                ),
                SnapshotUri=True,
                Rotation=False,
                VideoSourceMode=False,
                OSD=False,
            ),
        )

    def _stream_uri(self, request: SoapRequest, urls: MediaUrls) -> str:
        stream = self._stream_of(request)
        protocol = request.find_text("StreamSetup", "Transport", "Protocol") or "RTSP"
        kind = request.find_text("StreamSetup", "Stream") or "RTP-Unicast"
        if kind != "RTP-Unicast" or protocol not in ("RTSP", "UDP", "TCP"):
            raise SoapFault(
                400, "Sender", "ter:InvalidArgVal",
                f"{kind} over {protocol[:20]}: only RTP-Unicast over RTSP (TCP or UDP)",
            )  # fmt: skip
        return element("trt:GetStreamUriResponse", self._media_uri(urls.stream + stream.path))

    def _snapshot_uri(self, request: SoapRequest, urls: MediaUrls) -> str:
        self._stream_of(request)  # any profile's picture is the camera's
        return element("trt:GetSnapshotUriResponse", self._media_uri(urls.snapshot))

    def _stream_of(self, request: SoapRequest) -> _Stream:
        """The stream whose profile the request names; ter:NoProfile if none."""
        return self._named(request, "ProfileToken", lambda s: s.profile, "ter:NoProfile")

    def _encoder_of(self, request: SoapRequest) -> _Stream:
        """The stream whose encoder configuration it names; ter:NoConfig if none."""
        return self._named(request, "ConfigurationToken", lambda s: s.encoder, "ter:NoConfig")

    def _named(
        self, request: SoapRequest, field: str, token_of: Callable[[_Stream], str], fault: str
    ) -> _Stream:
        token = request.find_text(field)
        for stream in self._streams:
            if token_of(stream) == token:
                return stream
        raise SoapFault(400, "Sender", fault, f"no {field[:-5].lower()} {str(token)[:40]!r}")

    def _options(self, request: SoapRequest) -> str:
        """What a configuration can be: exactly what it is (read-only). Asked without
        naming a configuration or profile: what any of them is."""
        if request.find_text("ConfigurationToken"):
            streams: tuple[_Stream, ...] = (self._encoder_of(request),)
        elif request.find_text("ProfileToken"):
            streams = (self._stream_of(request),)
        else:
            streams = self._streams

        def span(name: str, values: list[int]) -> str:
            return element(name, text("tt:Min", min(values)), text("tt:Max", max(values)))

        return element(
            "trt:Options",
            span("tt:QualityRange", [5]),
            element(
                "tt:H264",
                *(
                    element(
                        "tt:ResolutionsAvailable",
                        text("tt:Width", s.width),
                        text("tt:Height", s.height),
                    )
                    for s in streams
                ),
                span("tt:GovLengthRange", [s.gov for s in streams]),
                span("tt:FrameRateRange", [s.fps for s in streams]),
                span("tt:EncodingIntervalRange", [1]),
                text("tt:H264ProfilesSupported", "Baseline"),
            ),
        )

    @staticmethod
    def _media_uri(uri: str) -> str:
        return element(
            "trt:MediaUri",
            text("tt:Uri", uri),
            text("tt:InvalidAfterConnect", False),
            text("tt:InvalidAfterReboot", False),
            text("tt:Timeout", "PT0S"),
        )

    def _profile(self, name: str, stream: _Stream) -> str:
        # The schema's order: Name, VideoSource, AudioSource, VideoEncoder, AudioEncoder.
        return element(
            name,
            text("tt:Name", stream.name),
            self._video_source_config("tt:VideoSourceConfiguration"),
            self._audio_source_config("tt:AudioSourceConfiguration") if self._audio else "",
            self._video_encoder("tt:VideoEncoderConfiguration", stream),
            self._audio_encoder("tt:AudioEncoderConfiguration") if self._audio else "",
            # Profile T's way of saying the stream takes audio back (the back-channel).
            element(
                "tt:Extension",
                self._audio_output("tt:AudioOutputConfiguration"),
                self._audio_decoder("tt:AudioDecoderConfiguration"),
            )
            if self._speaker
            else "",
            token=stream.profile,
            fixed=True,
        )

    def _shared(self, name: str, token: str, *content: str) -> str:
        """A configuration every profile carries (the camera, the microphone, the
        speaker): its UseCount counts them."""
        return _configuration(name, token, len(self._streams), *content)

    def _audio_output(self, name: str) -> str:
        return self._shared(
            name,
            AUDIO_OUTPUT_CONFIG,
            text("tt:OutputToken", AUDIO_OUTPUT),
            text("tt:OutputLevel", 100),
        )

    def _audio_decoder(self, name: str) -> str:
        return self._shared(name, AUDIO_DECODER)

    def _audio_source_config(self, name: str) -> str:
        return self._shared(name, AUDIO_SOURCE_CONFIG, text("tt:SourceToken", AUDIO_SOURCE))

    def _video_source(self) -> str:
        return element(
            "trt:VideoSources",
            text("tt:Framerate", float(self._fps)),
            element(
                "tt:Resolution", text("tt:Width", self._width), text("tt:Height", self._height)
            ),
            token=VIDEO_SOURCE,
        )

    def _video_source_config(self, name: str) -> str:
        return self._shared(
            name,
            VIDEO_SOURCE_CONFIG,
            text("tt:SourceToken", VIDEO_SOURCE),
            element("tt:Bounds", x=0, y=0, width=self._width, height=self._height),
        )

    @staticmethod
    def _video_encoder(name: str, stream: _Stream) -> str:
        return _configuration(
            name,
            stream.encoder,
            1,
            text("tt:Encoding", "H264"),
            element(
                "tt:Resolution", text("tt:Width", stream.width), text("tt:Height", stream.height)
            ),
            text("tt:Quality", 5.0),
            element(
                "tt:RateControl",
                text("tt:FrameRateLimit", stream.fps),
                text("tt:EncodingInterval", 1),
                text("tt:BitrateLimit", stream.bitrate),
            ),
            element(
                "tt:H264", text("tt:GovLength", stream.gov), text("tt:H264Profile", "Baseline")
            ),
            _no_multicast(),
            text("tt:SessionTimeout", "PT60S"),
        )

    def _audio_encoder(self, name: str) -> str:
        return self._shared(
            name,
            AUDIO_ENCODER,
            text("tt:Encoding", "G711"),
            text("tt:Bitrate", self._audio_bitrate),
            text("tt:SampleRate", 8),
            _no_multicast(),
            text("tt:SessionTimeout", "PT60S"),
        )


def _no_multicast() -> str:
    return element(
        "tt:Multicast",
        element("tt:Address", text("tt:Type", "IPv4"), text("tt:IPv4Address", "0.0.0.0")),
        text("tt:Port", 0),
        text("tt:TTL", 1),
        text("tt:AutoStart", False),
    )


def _configuration(name: str, token: str, use_count: int, *content: str) -> str:
    """A tt:ConfigurationEntity: its name (here its token too), the profiles using it."""
    return element(
        name, text("tt:Name", token), text("tt:UseCount", use_count), *content, token=token
    )
