"""ONVIF Media (ver10): one profile, read-only, describing the stream the RTSP server
serves (H.264 at the camera's size and rate, G.711 when /live carries it), its
RTSP URL and the snapshot URL. Configurations cannot be changed here: the settings
live in peercam.toml, and a second writer would fight it."""

from __future__ import annotations

from dataclasses import dataclass

from peercam.config import Config, parse_size
from peercam.onvif.soap import SoapFault, SoapRequest, action_not_supported, element, text

PROFILE = "main"
VIDEO_SOURCE = "VideoSource_1"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"
VIDEO_ENCODER = "VideoEncoder_1"
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

    stream: str  # rtsp://host:port/live
    snapshot: str  # http://host:port/onvif/snapshot.jpg


class MediaService:
    def __init__(self, config: Config, speaker: bool) -> None:
        """`speaker`: the camera takes audio back (the RTSP back-channel)."""
        self._speaker = speaker
        self._width, self._height = parse_size(config.camera.size)
        self._fps = config.camera.fps
        self._bitrate = config.video.bitrate_kbps
        self._gov = max(1, round(config.video.keyframe_interval * config.camera.fps))
        audio = config.rtsp.audio
        self._audio = config.audio.enabled and audio in G711
        self._audio_bitrate = 64  # kbit/s: G.711 at 8 kHz

    async def answer(self, request: SoapRequest, urls: MediaUrls) -> str:
        operation = request.operation
        if operation == "GetServiceCapabilities":
            return element(
                "trt:GetServiceCapabilitiesResponse",
                element(
                    "trt:Capabilities",
                    element("trt:ProfileCapabilities", MaximumNumberOfProfiles=1),
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
        if operation == "GetProfiles":
            return element("trt:GetProfilesResponse", self._profile("trt:Profiles"))
        if operation == "GetProfile":
            self._check_profile(request)
            return element("trt:GetProfileResponse", self._profile("trt:Profile"))
        if operation == "GetVideoSources":
            return element("trt:GetVideoSourcesResponse", self._video_source())
        if operation == "GetVideoSourceConfigurations":
            return element(
                "trt:GetVideoSourceConfigurationsResponse",
                self._video_source_config("trt:Configurations"),
            )
        if operation == "GetVideoSourceConfiguration":
            return element(
                "trt:GetVideoSourceConfigurationResponse",
                self._video_source_config("trt:Configuration"),
            )
        if operation == "GetVideoEncoderConfigurations":
            return element(
                "trt:GetVideoEncoderConfigurationsResponse",
                self._video_encoder("trt:Configurations"),
            )
        if operation == "GetVideoEncoderConfiguration":
            return element(
                "trt:GetVideoEncoderConfigurationResponse", self._video_encoder("trt:Configuration")
            )
        if operation == "GetAudioSources":
            sources = (
                element("trt:AudioSources", text("tt:Channels", 1), token=AUDIO_SOURCE)
                if self._audio
                else ""
            )
            return element("trt:GetAudioSourcesResponse", sources)
        if operation == "GetAudioSourceConfigurations":
            configs = _audio_source_config("trt:Configurations") if self._audio else ""
            return element("trt:GetAudioSourceConfigurationsResponse", configs)
        if operation == "GetVideoEncoderConfigurationOptions":
            return element("trt:GetVideoEncoderConfigurationOptionsResponse", self._options())
        if operation == "GetAudioEncoderConfigurations":
            configs = self._audio_encoder("trt:Configurations") if self._audio else ""
            return element("trt:GetAudioEncoderConfigurationsResponse", configs)
        if operation == "GetAudioOutputs":
            outputs = element("trt:AudioOutputs", token=AUDIO_OUTPUT) if self._speaker else ""
            return element("trt:GetAudioOutputsResponse", outputs)
        if operation == "GetAudioOutputConfigurations":
            configs = self._audio_output("trt:Configurations") if self._speaker else ""
            return element("trt:GetAudioOutputConfigurationsResponse", configs)
        if operation == "GetAudioDecoderConfigurations":
            configs = self._audio_decoder("trt:Configurations") if self._speaker else ""
            return element("trt:GetAudioDecoderConfigurationsResponse", configs)
        if operation == "GetStreamUri":
            self._check_profile(request)
            protocol = request.find_text("StreamSetup", "Transport", "Protocol") or "RTSP"
            stream = request.find_text("StreamSetup", "Stream") or "RTP-Unicast"
            if stream != "RTP-Unicast" or protocol not in ("RTSP", "UDP", "TCP"):
                raise SoapFault(
                    400, "Sender", "ter:InvalidArgVal",
                    f"{stream} over {protocol[:20]}: only RTP-Unicast over RTSP (TCP or UDP)",
                )  # fmt: skip
            return element("trt:GetStreamUriResponse", self._media_uri(urls.stream))
        if operation == "GetSnapshotUri":
            self._check_profile(request)
            return element("trt:GetSnapshotUriResponse", self._media_uri(urls.snapshot))
        raise action_not_supported(operation)

    def _options(self) -> str:
        """What the one configuration can be: exactly what it is (read-only)."""

        def exactly(name: str, value: int) -> str:
            return element(name, text("tt:Min", value), text("tt:Max", value))

        return element(
            "trt:Options",
            exactly("tt:QualityRange", 5),
            element(
                "tt:H264",
                element(
                    "tt:ResolutionsAvailable",
                    text("tt:Width", self._width),
                    text("tt:Height", self._height),
                ),
                exactly("tt:GovLengthRange", self._gov),
                exactly("tt:FrameRateRange", self._fps),
                exactly("tt:EncodingIntervalRange", 1),
                text("tt:H264ProfilesSupported", "Baseline"),
            ),
        )

    def _check_profile(self, request: SoapRequest) -> None:
        token = request.find_text("ProfileToken")
        if token != PROFILE:
            raise SoapFault(400, "Sender", "ter:NoProfile", f"no profile {str(token)[:40]!r}")

    @staticmethod
    def _media_uri(uri: str) -> str:
        return element(
            "trt:MediaUri",
            text("tt:Uri", uri),
            text("tt:InvalidAfterConnect", False),
            text("tt:InvalidAfterReboot", False),
            text("tt:Timeout", "PT0S"),
        )

    def _profile(self, name: str) -> str:
        # The schema's order: Name, VideoSource, AudioSource, VideoEncoder, AudioEncoder.
        audio_source = _audio_source_config("tt:AudioSourceConfiguration") if self._audio else ""
        return element(
            name,
            text("tt:Name", "Main stream"),
            self._video_source_config("tt:VideoSourceConfiguration"),
            audio_source,
            self._video_encoder("tt:VideoEncoderConfiguration"),
            self._audio_encoder("tt:AudioEncoderConfiguration") if self._audio else "",
            # Profile T's way of saying the stream takes audio back (the back-channel).
            element(
                "tt:Extension",
                self._audio_output("tt:AudioOutputConfiguration"),
                self._audio_decoder("tt:AudioDecoderConfiguration"),
            )
            if self._speaker
            else "",
            token=PROFILE,
            fixed=True,
        )

    @staticmethod
    def _audio_output(name: str) -> str:
        return _configuration(
            name,
            AUDIO_OUTPUT_CONFIG,
            text("tt:OutputToken", AUDIO_OUTPUT),
            text("tt:OutputLevel", 100),
        )

    @staticmethod
    def _audio_decoder(name: str) -> str:
        return _configuration(name, AUDIO_DECODER)

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
        return _configuration(
            name,
            VIDEO_SOURCE_CONFIG,
            text("tt:SourceToken", VIDEO_SOURCE),
            element("tt:Bounds", x=0, y=0, width=self._width, height=self._height),
        )

    def _video_encoder(self, name: str) -> str:
        return _configuration(
            name,
            VIDEO_ENCODER,
            text("tt:Encoding", "H264"),
            element(
                "tt:Resolution", text("tt:Width", self._width), text("tt:Height", self._height)
            ),
            text("tt:Quality", 5.0),
            element(
                "tt:RateControl",
                text("tt:FrameRateLimit", self._fps),
                text("tt:EncodingInterval", 1),
                text("tt:BitrateLimit", self._bitrate),
            ),
            element("tt:H264", text("tt:GovLength", self._gov), text("tt:H264Profile", "Baseline")),
            _no_multicast(),
            text("tt:SessionTimeout", "PT60S"),
        )

    def _audio_encoder(self, name: str) -> str:
        return _configuration(
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


def _configuration(name: str, token: str, *content: str) -> str:
    """A tt:ConfigurationEntity: its name (here its token too), one profile using it."""
    return element(name, text("tt:Name", token), text("tt:UseCount", 1), *content, token=token)


def _audio_source_config(name: str) -> str:
    return _configuration(name, AUDIO_SOURCE_CONFIG, text("tt:SourceToken", AUDIO_SOURCE))
