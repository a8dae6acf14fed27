"""ONVIF Media2 (ver20), read-only: the same profiles as Media (media_profiles.py) in
the form Profile T clients ask for — a profile's configurations by kind, encodings
by their RTP names, the stream URI by transport — and SetSynchronizationPoint, which
asks the profile's encoder for a keyframe (rate-limited like any viewer's request).

Media2 names the speaker's configurations inside the profile, which is how a Profile T
client learns that the camera takes audio back over the RTSP back-channel."""

from __future__ import annotations

from collections.abc import Callable

from peercam.config import Config
from peercam.onvif.media_profiles import (
    AUDIO_DECODER,
    AUDIO_ENCODER,
    AUDIO_OUTPUT_CONFIG,
    AUDIO_SOURCE_CONFIG,
    G711_BITRATE,
    G711_RATE,
    VIDEO_SOURCE_CONFIG,
    MediaProfiles,
    MediaStream,
    MediaUrls,
    configuration,
    no_multicast,
)
from peercam.onvif.soap import SoapFault, SoapRequest, action_not_supported, element, text

# GetProfiles' Type: the kinds of configuration a profile here can carry, in the
# order of tr2:ConfigurationSet.
KINDS = ("VideoSource", "AudioSource", "VideoEncoder", "AudioEncoder", "AudioOutput",
         "AudioDecoder")  # fmt: skip
# GetStreamUri's Protocol: RTP over UDP set up by RTSP, and RTP interleaved in RTSP's TCP
# connection. Multicast, RTSPS and RTSP over HTTP are not served.
PROTOCOLS = ("RtspUnicast", "RTSP")
# The configurations every profile shares, by kind.
SHARED_TOKENS = {
    "VideoSource": VIDEO_SOURCE_CONFIG,
    "AudioSource": AUDIO_SOURCE_CONFIG,
    "AudioEncoder": AUDIO_ENCODER,
    "AudioOutput": AUDIO_OUTPUT_CONFIG,
    "AudioDecoder": AUDIO_DECODER,
}
# The RTP names Media2 gives G.711's two laws.
G711_ENCODINGS = {"pcmu": "PCMU", "pcma": "PCMA"}

KeyframeRequest = Callable[[MediaStream], None]


class Media2Service:
    def __init__(self, config: Config, speaker: bool, request_keyframe: KeyframeRequest) -> None:
        """`speaker`: the camera takes audio back (the RTSP back-channel);
        `request_keyframe`: asks a stream's encoder for a keyframe, if it runs."""
        self._profiles = MediaProfiles(config, speaker)
        self._request_keyframe = request_keyframe
        p = self._profiles
        self._operations: dict[str, Callable[[SoapRequest, MediaUrls], str]] = {
            "GetServiceCapabilities": self._capabilities,
            "GetProfiles": self._get_profiles,
            "GetVideoSourceConfigurations": lambda r, u: self._configurations(
                r, "VideoSource", lambda s: p.video_source_config("tr2:Configurations")
            ),
            "GetVideoEncoderConfigurations": lambda r, u: self._configurations(
                r, "VideoEncoder", lambda s: self._video_encoder("tr2:Configurations", s)
            ),
            "GetAudioSourceConfigurations": lambda r, u: self._configurations(
                r, "AudioSource", lambda s: p.audio_source_config("tr2:Configurations")
            ),
            "GetAudioEncoderConfigurations": lambda r, u: self._configurations(
                r, "AudioEncoder", lambda s: self._audio_encoder("tr2:Configurations")
            ),
            "GetAudioOutputConfigurations": lambda r, u: self._configurations(
                r, "AudioOutput", lambda s: p.audio_output("tr2:Configurations")
            ),
            "GetAudioDecoderConfigurations": lambda r, u: self._configurations(
                r, "AudioDecoder", lambda s: p.audio_decoder("tr2:Configurations")
            ),
            "GetVideoEncoderConfigurationOptions": lambda r, u: element(
                "tr2:GetVideoEncoderConfigurationOptionsResponse",
                *(self._video_options(s) for s in self._asked(r, "VideoEncoder")),
            ),
            "GetAudioEncoderConfigurationOptions": self._audio_encoder_options,
            "GetStreamUri": self._stream_uri,
            "GetSnapshotUri": self._snapshot_uri,
            "SetSynchronizationPoint": self._synchronization_point,
        }

    async def answer(self, request: SoapRequest, urls: MediaUrls) -> str:
        operation = self._operations.get(request.operation)
        if operation is None:
            raise action_not_supported(request.operation)
        return operation(request, urls)

    def _kinds(self) -> tuple[str, ...]:
        """The kinds of configuration the profiles carry."""
        p = self._profiles
        has = {"AudioSource": p.audio, "AudioEncoder": p.audio,
               "AudioOutput": p.speaker, "AudioDecoder": p.speaker}  # fmt: skip
        return tuple(kind for kind in KINDS if has.get(kind, True))

    def _capabilities(self, request: SoapRequest, urls: MediaUrls) -> str:
        return element(
            "tr2:GetServiceCapabilitiesResponse",
            element(
                "tr2:Capabilities",
                element(
                    "tr2:ProfileCapabilities",
                    MaximumNumberOfProfiles=len(self._profiles.streams),
                    ConfigurationsSupported=" ".join(self._kinds()),
                ),
                element(
                    "tr2:StreamingCapabilities",
                    RTSPStreaming=True,
                    RTPMulticast=False,
                    RTP_RTSP_TCP=True,
                    NonAggregateControl=False,
                    AutoStartMulticast=False,
                ),
                SnapshotUri=True,
                Rotation=False,
                VideoSourceMode=False,
                OSD=False,
            ),
        )

    def _get_profiles(self, request: SoapRequest, urls: MediaUrls) -> str:
        token = request.find_text("Token")
        streams = self._profiles.streams
        if token is not None:
            streams = tuple(s for s in streams if s.profile == token)
            if not streams:
                raise SoapFault(400, "Sender", "ter:NoProfile", f"no profile {token[:40]!r}")
        # Kinds a profile here does not carry (a vendor's, Metadata, PTZ...) are simply
        # not in it: "if a profile doesn't contain a type no error shall be provided".
        asked = request.find_all_text("Type")
        # No Type: the profiles alone; "All": everything they carry (Media2 §5.2.2).
        kinds = self._kinds() if "All" in asked else tuple(k for k in self._kinds() if k in asked)
        return element("tr2:GetProfilesResponse", *(self._profile(s, kinds) for s in streams))

    def _profile(self, stream: MediaStream, kinds: tuple[str, ...]) -> str:
        p = self._profiles
        parts = {
            "VideoSource": lambda: p.video_source_config("tr2:VideoSource"),
            "AudioSource": lambda: p.audio_source_config("tr2:AudioSource"),
            "VideoEncoder": lambda: self._video_encoder("tr2:VideoEncoder", stream),
            "AudioEncoder": lambda: self._audio_encoder("tr2:AudioEncoder"),
            "AudioOutput": lambda: p.audio_output("tr2:AudioOutput"),
            "AudioDecoder": lambda: p.audio_decoder("tr2:AudioDecoder"),
        }
        configurations = [parts[kind]() for kind in kinds]  # KINDS' order is the schema's
        return element(
            "tr2:Profiles",
            text("tr2:Name", stream.name),
            element("tr2:Configurations", *configurations) if configurations else "",
            token=stream.profile,
            fixed=True,
        )

    def _asked(self, request: SoapRequest, kind: str) -> tuple[MediaStream, ...]:
        """Whose configuration of this kind tr2:GetConfiguration's arguments ask for: a
        configuration's token, a profile's, or neither (all). A configuration every
        profile shares (all but the video encoder's) is one, written once."""
        profiles = self._profiles
        configuration_token = request.find_text("ConfigurationToken")
        if kind not in self._kinds():
            if configuration_token:
                raise SoapFault(400, "Sender", "ter:NoConfig", f"no {kind} configuration")
            if request.find_text("ProfileToken"):
                profiles.stream_of(request)  # a profile, which carries none of these
            return ()
        if kind == "VideoEncoder":
            if configuration_token:
                return (profiles.encoder_of(request),)
            if request.find_text("ProfileToken"):
                return (profiles.stream_of(request),)
            return profiles.streams
        if configuration_token and configuration_token != SHARED_TOKENS[kind]:
            raise SoapFault(
                400, "Sender", "ter:NoConfig", f"no configuration {configuration_token[:40]!r}"
            )
        if request.find_text("ProfileToken"):
            return (profiles.stream_of(request),)
        return profiles.streams[:1]

    def _configurations(
        self, request: SoapRequest, kind: str, write: Callable[[MediaStream], str]
    ) -> str:
        return element(
            f"tr2:Get{kind}ConfigurationsResponse", *(write(s) for s in self._asked(request, kind))
        )

    def _video_encoder(self, name: str, stream: MediaStream) -> str:
        return configuration(
            name,
            stream.encoder,
            1,
            text("tt:Encoding", "H264"),
            element(
                "tt:Resolution", text("tt:Width", stream.width), text("tt:Height", stream.height)
            ),
            element(
                "tt:RateControl",
                text("tt:FrameRateLimit", float(stream.fps)),
                text("tt:BitrateLimit", stream.bitrate),
                ConstantBitRate=False,
            ),
            no_multicast(),
            text("tt:Quality", 5.0),
            GovLength=stream.gov,
            Profile="Baseline",
        )

    def _audio_encoder(self, name: str) -> str:
        law = self._profiles.g711 or "pcmu"
        return configuration(
            name,
            AUDIO_ENCODER,
            len(self._profiles.streams),
            text("tt:Encoding", G711_ENCODINGS[law]),
            no_multicast(),
            text("tt:Bitrate", G711_BITRATE),
            text("tt:SampleRate", G711_RATE),
        )

    @staticmethod
    def _video_options(stream: MediaStream) -> str:
        """What a configuration can be: exactly what it is (read-only)."""
        return element(
            "tr2:Options",
            text("tt:Encoding", "H264"),
            element("tt:QualityRange", text("tt:Min", 5.0), text("tt:Max", 5.0)),
            element(
                "tt:ResolutionsAvailable",
                text("tt:Width", stream.width),
                text("tt:Height", stream.height),
            ),
            element(
                "tt:BitrateRange", text("tt:Min", stream.bitrate), text("tt:Max", stream.bitrate)
            ),
            GovLengthRange=f"{stream.gov} {stream.gov}",
            FrameRatesSupported=f"{float(stream.fps)}",
            ProfilesSupported="Baseline",
            ConstantBitRateSupported=False,
        )

    def _audio_encoder_options(self, request: SoapRequest, urls: MediaUrls) -> str:
        if not self._asked(request, "AudioEncoder"):
            # The answer must hold options; a camera without them says why (ONVIF's
            # subcode for a device without audio).
            raise SoapFault(500, "Receiver", "ter:AudioNotSupported", "the microphone is off")
        law = self._profiles.g711 or "pcmu"
        return element(
            "tr2:GetAudioEncoderConfigurationOptionsResponse",
            element(
                "tr2:Options",
                text("tt:Encoding", G711_ENCODINGS[law]),
                element("tt:BitrateList", text("tt:Items", G711_BITRATE)),
                element("tt:SampleRateList", text("tt:Items", G711_RATE)),
            ),
        )

    def _stream_uri(self, request: SoapRequest, urls: MediaUrls) -> str:
        stream = self._profiles.stream_of(request)
        protocol = request.find_text("Protocol") or ""
        if protocol not in PROTOCOLS:
            raise SoapFault(
                400, "Sender", "ter:InvalidArgVal",
                f"protocol {protocol[:20]!r}: only {' and '.join(PROTOCOLS)}",
            )  # fmt: skip
        return element("tr2:GetStreamUriResponse", text("tr2:Uri", urls.stream + stream.path))

    def _snapshot_uri(self, request: SoapRequest, urls: MediaUrls) -> str:
        self._profiles.stream_of(request)  # any profile's picture is the camera's
        return element("tr2:GetSnapshotUriResponse", text("tr2:Uri", urls.snapshot))

    def _synchronization_point(self, request: SoapRequest, urls: MediaUrls) -> str:
        self._request_keyframe(self._profiles.stream_of(request))
        return element("tr2:SetSynchronizationPointResponse")
