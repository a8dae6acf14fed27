"""ONVIF Media (ver10), read-only: the camera's profiles (media_profiles.py) as
Profile S clients read them, with their RTSP URLs and the snapshot URL."""

from __future__ import annotations

from collections.abc import Callable

from peercam.config import Config
from peercam.onvif.media_profiles import (
    AUDIO_ENCODER,
    AUDIO_OUTPUT,
    AUDIO_SOURCE,
    G711_BITRATE,
    G711_RATE,
    VIDEO_SOURCE,
    MediaProfiles,
    MediaStream,
    MediaUrls,
    configuration,
    no_multicast,
)
from peercam.onvif.soap import SoapFault, SoapRequest, action_not_supported, element, text


class MediaService:
    def __init__(self, config: Config, speaker: bool) -> None:
        """`speaker`: the camera takes audio back (the RTSP back-channel)."""
        self._profiles = profiles = MediaProfiles(config, speaker)
        self._streams = profiles.streams
        self._speaker = speaker
        self._audio = profiles.audio
        self._operations: dict[str, Callable[[SoapRequest, MediaUrls], str]] = {
            "GetServiceCapabilities": self._capabilities,
            "GetProfiles": lambda r, u: element(
                "trt:GetProfilesResponse",
                *(self._profile("trt:Profiles", s) for s in self._streams),
            ),
            "GetProfile": lambda r, u: element(
                "trt:GetProfileResponse", self._profile("trt:Profile", self._profiles.stream_of(r))
            ),
            "GetVideoSources": lambda r, u: element(
                "trt:GetVideoSourcesResponse", self._video_source()
            ),
            "GetVideoSourceConfigurations": lambda r, u: element(
                "trt:GetVideoSourceConfigurationsResponse",
                self._profiles.video_source_config("trt:Configurations"),
            ),
            "GetVideoSourceConfiguration": lambda r, u: element(
                "trt:GetVideoSourceConfigurationResponse",
                self._profiles.video_source_config("trt:Configuration"),
            ),
            "GetVideoEncoderConfigurations": lambda r, u: element(
                "trt:GetVideoEncoderConfigurationsResponse",
                *(self._video_encoder("trt:Configurations", s) for s in self._streams),
            ),
            "GetVideoEncoderConfiguration": lambda r, u: element(
                "trt:GetVideoEncoderConfigurationResponse",
                self._video_encoder("trt:Configuration", self._profiles.encoder_of(r)),
            ),
            "GetCompatibleVideoEncoderConfigurations": lambda r, u: element(
                "trt:GetCompatibleVideoEncoderConfigurationsResponse",
                self._video_encoder("trt:Configurations", self._profiles.stream_of(r)),
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
                self._profiles.audio_source_config("trt:Configurations") if self._audio else "",
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
                self._profiles.audio_output("trt:Configurations") if self._speaker else "",
            ),
            "GetAudioDecoderConfigurations": lambda r, u: element(
                "trt:GetAudioDecoderConfigurationsResponse",
                self._profiles.audio_decoder("trt:Configurations") if self._speaker else "",
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
        stream = self._profiles.stream_of(request)
        protocol = request.find_text("StreamSetup", "Transport", "Protocol") or "RTSP"
        kind = request.find_text("StreamSetup", "Stream") or "RTP-Unicast"
        if kind != "RTP-Unicast" or protocol not in ("RTSP", "UDP", "TCP"):
            raise SoapFault(
                400, "Sender", "ter:InvalidArgVal",
                f"{kind} over {protocol[:20]}: only RTP-Unicast over RTSP (TCP or UDP)",
            )  # fmt: skip
        return element("trt:GetStreamUriResponse", self._media_uri(urls.stream + stream.path))

    def _snapshot_uri(self, request: SoapRequest, urls: MediaUrls) -> str:
        self._profiles.stream_of(request)  # any profile's picture is the camera's
        return element("trt:GetSnapshotUriResponse", self._media_uri(urls.snapshot))

    def _options(self, request: SoapRequest) -> str:
        """What a configuration can be: exactly what it is (read-only). Asked without
        naming a configuration or profile: what any of them is."""
        if request.find_text("ConfigurationToken"):
            streams: tuple[MediaStream, ...] = (self._profiles.encoder_of(request),)
        elif request.find_text("ProfileToken"):
            streams = (self._profiles.stream_of(request),)
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

    def _profile(self, name: str, stream: MediaStream) -> str:
        # The schema's order: Name, VideoSource, AudioSource, VideoEncoder, AudioEncoder.
        return element(
            name,
            text("tt:Name", stream.name),
            self._profiles.video_source_config("tt:VideoSourceConfiguration"),
            self._profiles.audio_source_config("tt:AudioSourceConfiguration")
            if self._audio
            else "",
            self._video_encoder("tt:VideoEncoderConfiguration", stream),
            self._audio_encoder("tt:AudioEncoderConfiguration") if self._audio else "",
            # Profile T's way of saying the stream takes audio back (the back-channel).
            element(
                "tt:Extension",
                self._profiles.audio_output("tt:AudioOutputConfiguration"),
                self._profiles.audio_decoder("tt:AudioDecoderConfiguration"),
            )
            if self._speaker
            else "",
            token=stream.profile,
            fixed=True,
        )

    def _video_source(self) -> str:
        return element(
            "trt:VideoSources",
            text("tt:Framerate", float(self._profiles.fps)),
            element(
                "tt:Resolution",
                text("tt:Width", self._profiles.width),
                text("tt:Height", self._profiles.height),
            ),
            token=VIDEO_SOURCE,
        )

    @staticmethod
    def _video_encoder(name: str, stream: MediaStream) -> str:
        return configuration(
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
            no_multicast(),
            text("tt:SessionTimeout", "PT60S"),
        )

    def _audio_encoder(self, name: str) -> str:
        return configuration(
            name,
            AUDIO_ENCODER,
            len(self._streams),
            text("tt:Encoding", "G711"),  # ONVIF's one name for both laws
            text("tt:Bitrate", G711_BITRATE),
            text("tt:SampleRate", G711_RATE),
            no_multicast(),
            text("tt:SessionTimeout", "PT60S"),
        )
