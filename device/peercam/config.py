"""The daemon's configuration: a TOML file validated at start, overridable by flags."""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A configuration problem, phrased as one line for the user. `fields`: every
    problem found, by the dotted key it is about ("camera.fps"), when the model
    found them (the settings page shows each beside its field)."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class _Section(BaseModel):
    # A typo in a key must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    # HTTPS (or plain HTTP when tls is off).
    port: Annotated[int, Field(ge=0, le=65535)] = 8443
    # Plain HTTP that only redirects to HTTPS (with TLS on).
    redirect_http: bool = True
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # Off only behind a reverse proxy that does TLS: browsers refuse the microphone and
    # the login cookie to a plain-HTTP page on another host.
    tls: bool = True
    # Your own certificate (PEM); without one a self-signed one is made at first start.
    tls_cert: str | None = None
    tls_key: str | None = None
    # Credentials and the certificate; default: $STATE_DIRECTORY (systemd), else
    # /var/lib/peercam for root, else ~/.local/state/peercam.
    state_dir: str | None = None
    max_sdp_bytes: Annotated[int, Field(ge=1024, le=1_000_000)] = 64_000
    # Concurrent HTTP connections: in all (0: from the descriptor limit, leaving room
    # for every viewer) and from one address (a browser opens up to six, tabs more).
    max_connections: Annotated[int, Field(ge=0, le=100_000)] = 0
    max_connections_per_address: Annotated[int, Field(ge=1, le=10_000)] = 32
    # Seconds a connection may take to finish TLS, and to send a complete request
    # (the first, or the next on an idle keep-alive connection).
    tls_handshake_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # The camera's time zone, an IANA name such as Europe/Berlin: the times in its log
    # and the local time it tells NVRs (ONVIF); first boot sets the system's too.
    # None: the system's.
    time_zone: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: an IANA name such as Europe/Berlin"
            ) from None
        return value


class AuthConfig(_Section):
    # How long a browser stays logged in, in seconds (default a week).
    session_lifetime: Annotated[float, Field(ge=1, le=365 * 86400)] = 7 * 86400.0
    # Failed logins (password, Basic or token) one address may make per minute.
    login_failures_per_minute: Annotated[int, Field(ge=1, le=1000)] = 5
    # Failed logins from all addresses together per minute: past it, password and
    # Basic checks get 429 until the minute has passed (a logged-in page and valid
    # tokens keep working), so guessing from many addresses gains nothing.
    login_failures_per_minute_total: Annotated[int, Field(ge=1, le=100_000)] = 30


Size = tuple[int, int]
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def parse_size(text: str) -> Size:
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}")
    width, height = int(match[1]), int(match[2])
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even, got {text!r}")
    if not (64 <= width <= 4096 and 64 <= height <= 4096):
        raise ValueError(f"size must be between 64x64 and 4096x4096, got {text!r}")
    return width, height


class CameraConfig(_Section):
    # "auto": a Pi camera (picamera2), else a USB/V4L2 camera, else the test pattern.
    # "file": replay a recorded H.264 or MJPEG clip (`file`) as if it were a camera.
    source: Literal["auto", "test", "picamera2", "v4l2", "file"] = "auto"
    size: str = "1280x720"
    fps: Annotated[int, Field(ge=1, le=60)] = 30
    # picamera2: which CSI camera (0 is the first).
    index: Annotated[int, Field(ge=0, le=7)] = 0
    # v4l2: the device (None: the first capture device found) and what to ask it for.
    device: str | None = None
    input_format: Literal["auto", "h264", "mjpeg", "yuyv"] = "auto"
    file: str | None = None
    rotation: Literal[0, 180] = 0
    hflip: bool = False
    vflip: bool = False
    # A camera (or microphone) that delivers nothing for this long while open is
    # restarted: a hung driver must not freeze every viewer's picture.
    stall_timeout: Annotated[float, Field(ge=0.5, le=120)] = 3.0
    # Seconds the camera (and microphone) stay open after the last viewer leaves, so a
    # page refresh finds them running: a Pi camera takes a second or two to reopen.
    linger_seconds: Annotated[float, Field(ge=0, le=600)] = 5.0
    # The camera's small second stream: NVRs' detection stream (RTSP /live/sub, ONVIF
    # profile "sub", H.264 encoded once for all who take it) and motion detection's
    # picture. A Pi camera's ISP scales it ("lores"); other cameras' frames are
    # scaled in the encoder's thread. Never larger than `size`; "" for none.
    lores_size: str = "640x360"

    @field_validator("size")
    @classmethod
    def _valid_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("lores_size")
    @classmethod
    def _valid_lores(cls, value: str) -> str:
        if value:
            parse_size(value)
        return value

    @property
    def dimensions(self) -> Size:
        return parse_size(self.size)

    @property
    def lores_dimensions(self) -> Size | None:
        """`lores_size`, no larger than the main picture in either direction."""
        if not self.lores_size:
            return None
        (width, height), (main_width, main_height) = parse_size(self.lores_size), self.dimensions
        if width > main_width or height > main_height:
            return main_width, main_height
        return width, height


class VideoConfig(_Section):
    codecs: list[Literal["h264", "vp8"]] = ["h264", "vp8"]
    # Software H.264 when the camera does not encode: "auto" probes the board's
    # V4L2 memory-to-memory encoder (a Pi 4's hardware) and falls back to libx264.
    h264_encoder: Literal["auto", "libx264", "h264_v4l2m2m"] = "auto"
    bitrate_kbps: Annotated[int, Field(ge=100, le=20_000)] = 2500
    # Seconds between natural keyframes; viewers joining mid-GOP ask for one.
    keyframe_interval: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Many viewers asking for keyframes must not turn the stream into all keyframes.
    keyframe_min_gap_ms: Annotated[int, Field(ge=0, le=10_000)] = 500
    # The small H.264 stream at camera.lores_size (RTSP /live/sub, ONVIF profile
    # "sub"): frames per second (Frigate detects at 5; 10 leaves room) and bitrate.
    sub_fps: Annotated[int, Field(ge=1, le=60)] = 10
    sub_bitrate_kbps: Annotated[int, Field(ge=50, le=5_000)] = 500
    # A viewer whose path carries less than `bitrate_kbps` (mobile data, a far relay)
    # is moved to a low layer: camera.lores_size at the camera's full rate and this
    # bitrate, H.264, encoded once for all such viewers and only while one needs it.
    # 0: no low layer, every viewer gets the main stream.
    low_bitrate_kbps: Annotated[int, Field(ge=0, le=5_000)] = 500

    @field_validator("codecs")
    @classmethod
    def _some_codec(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one codec is needed")
        return value


Rate = Literal[8000, 16000, 22050, 32000, 44100, 48000]


class AudioConfig(_Section):
    enabled: bool = True
    # "auto": the ALSA capture device when the board has a sound card, else the tone.
    source: Literal["auto", "test", "alsa"] = "auto"
    device: str = "default"  # ALSA PCM name, e.g. "plughw:1,0"
    rate: Rate = 48000
    channels: Annotated[int, Field(ge=1, le=2)] = 1
    tone_hz: Annotated[float, Field(gt=20, lt=20_000)] = 440.0
    bitrate_kbps: Annotated[int, Field(ge=6, le=256)] = 32
    # Offered in this order: Opus for browsers, G.711 for clients that have nothing else,
    # G.722 for SIP phones that offer it. Each is encoded only while someone receives
    # it: aac for NVRs (RTSP /live/aac).
    codecs: list[Literal["opus", "pcmu", "pcma", "g722", "aac"]] = [
        "opus", "pcmu", "pcma", "g722", "aac",
    ]  # fmt: skip


class TalkbackConfig(_Section):
    enabled: bool = True
    device: str = "default"  # ALSA playback PCM
    rate: Rate = 48000
    channels: Annotated[int, Field(ge=1, le=2)] = 1
    jitter_ms: Annotated[int, Field(ge=0, le=60)] = 40  # latency added to smooth the network
    # Cancel the speaker's sound in what the microphone sends (WebRTC's AEC3, in the
    # microphone's thread, with the speaker's output as reference): both sides can
    # talk at once. With a noise suppressor and a high-pass filter; automatic gain
    # on request. Needs an ALSA microphone at 8, 16, 32, 44.1 or 48 kHz.
    echo_cancellation: bool = True
    noise_suppression: bool = True
    auto_gain: bool = False
    # The fallback where cancelling is not enough (a loud speaker right against the
    # microphone): silence the microphone to viewers while talkback plays.
    half_duplex: bool = False


class GpioConfig(_Section):
    # BCM pin numbers; a pin left unset means that part is not fitted.
    doorbell_pin: Annotated[int, Field(ge=0, le=53)] | None = None
    doorbell_pull_up: bool = True
    debounce_ms: Annotated[int, Field(ge=0, le=1000)] = 50
    motion_pin: Annotated[int, Field(ge=0, le=53)] | None = None
    led_pin: Annotated[int, Field(ge=0, le=53)] | None = None
    relay_pin: Annotated[int, Field(ge=0, le=53)] | None = None
    relay_active_high: bool = True

    @property
    def in_use(self) -> bool:
        pins = (self.doorbell_pin, self.motion_pin, self.led_pin, self.relay_pin)
        return any(pin is not None for pin in pins)


class DoorbellConfig(_Section):
    ring_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0  # seconds until "missed"
    door_pulse_ms: Annotated[int, Field(ge=50, le=30_000)] = 1000


class IceServer(_Section):
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    @field_validator("urls")
    @classmethod
    def _known_schemes(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"ICE server URL must start with stun:, turn: or turns:: {url!r}")
        return value


class TurnRestConfig(_Section):
    """A TURN server (coturn's `use-auth-secret`) sharing a secret with peercam, which
    then mints short-lived credentials per session: no password ever sits in a page."""

    urls: list[str]
    secret: str
    ttl: Annotated[int, Field(ge=60, le=86_400)] = 3600

    @field_validator("urls")
    @classmethod
    def _turn_only(cls, value: list[str]) -> list[str]:
        if not value or not all(url.startswith(("turn:", "turns:")) for url in value):
            raise ValueError("TURN URLs must start with turn: or turns:")
        return value


class WebRtcConfig(_Section):
    # Empty by default: on a LAN host candidates suffice, and no third party is contacted.
    ice_servers: list[IceServer] = []
    turn_rest: TurnRestConfig | None = None
    # "relay": both the daemon and the page use TURN relay candidates only.
    ice_transport_policy: Literal["all", "relay"] = "all"
    # Interfaces (e.g. ["wlan0"]) or addresses to offer host candidates on; [] for all.
    interfaces: list[str] = []
    # For a router port forward: host candidates only on these UDP ports ("40000-40100"),
    # also advertised at the router's public address.
    udp_ports: str | None = None
    public_ip: str | None = None
    # The most a browser may hold video before showing it (the playout-delay header
    # extension, minimum 0; rtc/playout_delay.py has the measurements behind 100).
    # "browser": do not send it, and let the browser choose.
    playout_delay_ms: Annotated[int, Field(ge=0, le=40_950)] | Literal["browser"] = 100
    # Viewers' RTP sent a frame at a time straight onto the socket (rtc/frame_sender.py);
    # false: aiortc's own sender, packet by packet.
    frame_sender: bool = True

    @field_validator("udp_ports")
    @classmethod
    def _port_range(cls, value: str | None) -> str | None:
        if value is not None:
            first, _, last = value.partition("-")
            if not (
                first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535
            ):
                raise ValueError(f"expected FIRST-LAST between 1024 and 65535, got {value!r}")
        return value

    @property
    def port_range(self) -> tuple[int, int] | tuple[None, None]:
        if self.udp_ports is None:
            return None, None
        first, _, last = self.udp_ports.partition("-")
        return int(first), int(last)


class WhipTarget(_Section):
    """A WHIP endpoint (RFC 9725) that receives the one encoded stream: an SFU such as
    MediaMTX, LiveKit or Janus's WHIP front end, which then serves any number of viewers."""

    url: str
    token: str | None = None  # sent as "Authorization: Bearer <token>"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"a WHIP URL is http:// or https://, got {value!r}")
        return value


class RtpTarget(_Section):
    """Plain RTP to a media server's input (e.g. a Janus streaming mountpoint)."""

    host: str
    video_port: Annotated[int, Field(ge=1, le=65535)]
    audio_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    video_payload_type: Annotated[int, Field(ge=96, le=127)] = 96
    audio_payload_type: Annotated[int, Field(ge=96, le=127)] = 111


class RepublishConfig(_Section):
    whip: list[WhipTarget] = []
    rtp: list[RtpTarget] = []


class ViewerConfig(_Section):
    # Frames a slow viewer may lag behind before it is skipped to the next keyframe.
    queue_frames: Annotated[int, Field(ge=2, le=600)] = 30
    # A peer that never completes ICE is dropped after this many seconds.
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_viewers: Annotated[int, Field(ge=1, le=1000)] = 50
    # One address may not take every slot, nor churn sessions in a loop.
    max_per_client: Annotated[int, Field(ge=1, le=1000)] = 10
    # Nor may one account (a shared viewer login, a leaked token) from many addresses.
    max_per_user: Annotated[int, Field(ge=1, le=1000)] = 10
    sessions_per_minute_per_client: Annotated[int, Field(ge=1, le=10_000)] = 60


class RecordingConfig(_Section):
    """Event clips (recording/): on a trigger, the last `preroll_seconds` of the shared
    encoded stream plus what follows, to MP4 under the state directory."""

    # Pre-roll needs the encoder running while nobody watches: off unless asked for
    # (the SD card image's default peercam.toml turns it on).
    enabled: bool = False
    triggers: list[Literal["ring", "motion", "manual"]] = ["ring", "motion", "manual"]
    preroll_seconds: Annotated[float, Field(ge=0, le=30)] = 5.0
    # After the last trigger; a trigger during a clip extends it, up to max_seconds.
    post_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    max_seconds: Annotated[float, Field(gt=0, le=1800)] = 120.0
    quota_mb: Annotated[int, Field(ge=1, le=10_000_000)] = 2048
    # Oldest clips go first when the disk's free space would fall below this.
    min_free_mb: Annotated[int, Field(ge=0, le=10_000_000)] = 256

    @model_validator(mode="after")
    def _max_covers_a_clip(self) -> RecordingConfig:
        if self.max_seconds < self.preroll_seconds + self.post_seconds:
            raise ValueError("max_seconds must be at least preroll_seconds + post_seconds")
        return self


class MotionMask(_Section):
    """A rectangle to ignore, in fractions of the picture (0..1 from the top left)."""

    x: Annotated[float, Field(ge=0, le=1)]
    y: Annotated[float, Field(ge=0, le=1)]
    width: Annotated[float, Field(gt=0, le=1)]
    height: Annotated[float, Field(gt=0, le=1)]


class MotionConfig(_Section):
    """Motion detection by frame differencing on a small grey picture (motion/)."""

    enabled: bool = False
    # Frames analysed per second: motion lasts longer than a frame; the CPU is saved.
    fps: Annotated[float, Field(gt=0, le=30)] = 5.0
    # How much a point's brightness (0-255) must change to count as changed.
    threshold: Annotated[int, Field(ge=1, le=255)] = 25
    # The changed share of the watched picture that makes motion.
    min_area: Annotated[float, Field(gt=0, le=1)] = 0.01
    # After a motion event, the next one waits this long; motion in between extends
    # the clip being recorded instead.
    cooldown_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    masks: list[MotionMask] = []


class FrameCounterConfig(_Section):
    """The frame counter output (frame_counter/): counts each listed codec's shared
    frames in /metrics. Keeps that codec's encoder running while nobody watches."""

    codecs: list[Literal["h264", "vp8", "opus", "pcmu", "pcma"]] = []


class MqttConfig(_Section):
    """Home Assistant over MQTT (homeassistant/): the camera appears as one device."""

    enabled: bool = False
    host: str = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: 8883 with TLS, else 1883
    tls: bool = False
    # The broker's CA certificate (PEM); the system's CAs when unset.
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    discovery_prefix: str = "homeassistant"  # as set in Home Assistant's MQTT options
    topic_prefix: str = "peercam"
    name: str = "Doorbell camera"  # the device's name in Home Assistant
    # Anyone who may publish on the broker can press these: off unless asked for.
    door_button: bool = False
    recording_switch: bool = False
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30

    @model_validator(mode="after")
    def _needs_host(self) -> MqttConfig:
        if self.enabled and not self.host:
            raise ValueError("mqtt.host is needed when mqtt.enabled is true")
        for key in ("discovery_prefix", "topic_prefix"):
            value = getattr(self, key)
            if not re.fullmatch(r"[A-Za-z0-9_\-/]+", value) or value.startswith("/"):
                raise ValueError(f"mqtt.{key}: letters, digits, _ - and / only")
        return self


class SipConfig(_Section):
    """The doorbell as a SIP caller (sip/): a ring calls the house phones; the first to
    answer (a phone or a page) takes the call."""

    enabled: bool = False
    # The PBX or registrar (a Fritz!Box, Asterisk), host or host:port; empty: no
    # registration, and `call` holds full SIP URIs reached directly.
    registrar: str = ""
    # tls: the PBX's certificate is checked against tls_ca_file (PEM; the system's CAs
    # when unset) and the name in `registrar`; its port defaults to 5061.
    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls_ca_file: str | None = None
    domain: str = ""  # of the account's SIP URI; default: the registrar's host
    user: str = ""
    password: str | None = None
    display_name: str = "Front door"
    register_seconds: Annotated[int, Field(ge=60, le=86_400)] = 600
    listen_port: Annotated[int, Field(ge=0, le=65535)] = 5060  # 0: any free port
    # Whom a ring calls: extensions or user names at the registrar ("**610", "hall"),
    # or SIP URIs ("sip:hall@192.168.1.20").
    call: list[str] = []
    ring_mode: Literal["parallel", "sequence"] = "parallel"
    ring_seconds: Annotated[float, Field(gt=0, le=600)] = 20.0  # each target's
    # Offered to phones in this order; each is the microphone's shared encoder.
    codecs: list[Literal["g722", "pcma", "pcmu", "opus"]] = ["g722", "pcma", "pcmu", "opus"]
    # The camera to phones that take video (H.264 in packetization-mode 1): the
    # smallest H.264 stream the camera makes (video.low_bitrate_kbps's, else
    # camera.lores_size's), from the shared encoder.
    video: bool = False
    # Keys a phone in the call presses to open the door (e.g. "#", or a PIN such as
    # "4711#"); empty: the keypad opens nothing.
    door_code: Annotated[str, Field(pattern=r"^[0-9*#A-D]{0,16}$")] = ""
    # Phones that may call the door (to talk, or to answer a ring): SIP URIs or user
    # names at the domain. Calls from anyone else are refused.
    allowed_callers: list[str] = []

    @model_validator(mode="after")
    def _needs_targets(self) -> SipConfig:
        if self.enabled and not self.call and not self.allowed_callers:
            raise ValueError("sip.call: whom a ring calls (or sip.allowed_callers) is needed")
        if not self.registrar:
            for target in self.call:
                if not target.startswith(("sip:", "sips:")):
                    raise ValueError(f"sip.call: {target!r} needs sip.registrar, or a sip: URI")
        if self.registrar and not self.user:
            raise ValueError("sip.user is needed to register at sip.registrar")
        return self


class RingbackConfig(_Section):
    """What the visitor hears (ringback/), through talkback's speaker: a tone looped
    while the bell rings, a message once when nobody answers. A file is anything
    FFmpeg reads; "" is the sound shipped with peercam."""

    enabled: bool = True
    tone_file: str = ""
    unanswered_file: str = ""
    volume: Annotated[float, Field(ge=0, le=1)] = 0.8


class WebPushConfig(_Section):
    """Web Push to the household's phones and computers (webpush/), and the page as
    an installable app."""

    enabled: bool = True
    # Who runs this camera, for the push services (RFC 8292's `sub`): a push service
    # writes there when this camera's messages misbehave.
    contact: str = "mailto:admin@peercam.invalid"
    # A logged-in user hands the daemon the address it will post to: only the
    # browsers' own push services (these hosts and their subdomains) are taken, so a
    # page cannot make the camera post into the home network.
    endpoint_hosts: list[str] = [
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
    ]
    # Plain-HTTP endpoints (a push service of one's own on the LAN, the tests').
    allow_http_endpoints: bool = False
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0  # seconds per push request
    # Messages waiting to be sent; past it the oldest waiting goes.
    queue: Annotated[int, Field(ge=1, le=1000)] = 32
    max_subscriptions: Annotated[int, Field(ge=1, le=10_000)] = 200
    # What a user who has not chosen gets.
    motion_default: bool = False
    clips_default: bool = True


class RtspConfig(_Section):
    """RTSP for NVRs (rtsp/): rtsp://camera:8554/live from the shared packets."""

    # On, as on any IP camera: NVRs expect rtsp://camera:8554/live. It asks for a
    # login like the page does; turning it off closes the port.
    enabled: bool = True
    host: str = ""  # "": server.host
    port: Annotated[int, Field(ge=0, le=65535)] = 8554
    # The audio track of /live (/live/opus, /live/pcmu, /live/pcma, /live/noaudio pick
    # their own): G.711 is what most NVRs play.
    audio: Literal["pcmu", "pcma", "opus", "aac", "none"] = "pcmu"
    session_timeout: Annotated[float, Field(ge=5, le=3600)] = 60.0
    max_sessions: Annotated[int, Field(ge=1, le=1000)] = 16
    max_sessions_per_client: Annotated[int, Field(ge=1, le=1000)] = 8
    # Digest as well as Basic (what NVRs expect); false keeps only Basic, and so no
    # MD5 of a password in use (auth/digest.py says what that costs).
    digest: bool = True


class OnvifConfig(_Section):
    """ONVIF for NVRs and Home Assistant (onvif/): Device, Media and Events (PullPoint)
    over plain HTTP, and WS-Discovery so they find the camera. It hands out the RTSP
    stream, so it runs only with RTSP. ONVIF clients log in with a WS-UsernameToken
    digest, which only a viewer token can be checked against (`peercam token create
    NAME --role viewer`: the token's name and secret are the user and password)."""

    enabled: bool = True
    host: str = ""  # "": server.host
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    # Answer WS-Discovery probes on UDP 3702; Hello on start, Bye on stop.
    discovery: bool = True
    discovery_port: Annotated[int, Field(ge=1, le=65535)] = 3702  # others for tests only
    name: str = "peercam"  # in the discovery scopes, which NVRs show as the camera's name
    location: str = ""  # e.g. "front door"; a scope too

    @field_validator("name", "location")
    @classmethod
    def _printable(cls, value: str) -> str:
        if len(value) > 64 or not value.isprintable():
            raise ValueError("at most 64 printable characters")
        return value


class UpdateConfig(_Section):
    """Signed updates (update/): `peercam update FILE`, or a bundle uploaded on the
    settings page. A bundle is installed beside the running release and kept only if
    the new daemon starts and answers a viewer; otherwise the old one comes back."""

    # Where keys and releases are is not a setting (update/paths.py says why).
    # How long a new release has to report ready and answer the self-check.
    ready_deadline: Annotated[float, Field(ge=10, le=600)] = 180.0


class RemoteConfig(_Section):
    """Remote access (remote/): the camera keeps an outbound link to a rendezvous (an
    MQTT broker) through which paired phones signal, sealed end to end; media then
    goes by ICE, over TURN when no direct path exists. Nothing is opened on the router.

    `broker` is the camera's link: mqtt://, mqtts://, ws:// or wss:// (path included,
    e.g. wss://broker.example:8884/mqtt). Phones can only use WebSockets: `page_broker`
    is what they are given at pairing (the same broker as browsers reach it); unset,
    the camera's own when that is ws:// or wss://."""

    enabled: bool = False
    broker: str = ""
    ca_file: str | None = None  # the broker's CA (PEM); the system's CAs when unset
    username: str | None = None
    password: str | None = None
    page_broker: str = ""
    # Broker credentials handed to phones (the broker's own, not the camera's): a
    # hosted broker often wants a login even for ciphertext.
    page_username: str | None = None
    page_password: str | None = None
    topic_prefix: str = "peercam"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    # Which of the camera's ICE candidates a remote viewer is told: "public" gives
    # server-reflexive and relay ones only, so LAN addresses are not handed outside.
    candidates: Literal["public", "all"] = "public"

    @model_validator(mode="after")
    def _check(self) -> RemoteConfig:
        for key in ("broker", "page_broker"):
            value = getattr(self, key)
            if value and not re.fullmatch(r"(mqtts?|wss?)://[^/\s:@]+(:\d{1,5})?(/\S*)?", value):
                raise ValueError(f"remote.{key}: mqtt(s):// or ws(s):// host[:port][/path]")
        if self.enabled and not self.broker:
            raise ValueError("remote.broker is needed when remote.enabled is true")
        if self.enabled and not self.phone_broker:
            raise ValueError(
                "remote.page_broker (ws:// or wss://) is needed: phones reach brokers by WebSocket"
            )
        prefix = self.topic_prefix
        if not re.fullmatch(r"[A-Za-z0-9_\-/]+", prefix) or prefix.startswith("/"):
            raise ValueError("remote.topic_prefix: letters, digits, _ - and / only")
        return self

    @property
    def phone_broker(self) -> str:
        if self.page_broker:
            return self.page_broker
        return self.broker if self.broker.startswith(("ws://", "wss://")) else ""


class Config(_Section):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    camera: CameraConfig = CameraConfig()
    video: VideoConfig = VideoConfig()
    audio: AudioConfig = AudioConfig()
    talkback: TalkbackConfig = TalkbackConfig()
    gpio: GpioConfig = GpioConfig()
    doorbell: DoorbellConfig = DoorbellConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    viewers: ViewerConfig = ViewerConfig()
    republish: RepublishConfig = RepublishConfig()
    recording: RecordingConfig = RecordingConfig()
    motion: MotionConfig = MotionConfig()
    frame_counter: FrameCounterConfig = FrameCounterConfig()
    mqtt: MqttConfig = MqttConfig()
    ringback: RingbackConfig = RingbackConfig()
    sip: SipConfig = SipConfig()
    webpush: WebPushConfig = WebPushConfig()
    remote: RemoteConfig = RemoteConfig()
    rtsp: RtspConfig = RtspConfig()
    onvif: OnvifConfig = OnvifConfig()
    update: UpdateConfig = UpdateConfig()

    @model_validator(mode="after")
    def _phones_need_a_speaker(self) -> Config:
        # A phone that answers takes the call as a page does, by taking talkback's
        # floor: without a speaker every answer would be refused and hung up.
        if self.sip.enabled and not self.talkback.enabled:
            raise ValueError(
                "sip.enabled needs talkback.enabled: the phone is heard on the speaker"
            )
        return self

    @property
    def small_stream(self) -> SmallStream | None:
        """The small H.264 stream the camera serves (RTSP /live/sub, ONVIF profile
        "sub"), if `camera.lores_size` asks for one and H.264 is made at all."""
        size = self.camera.lores_dimensions
        if size is None or "h264" not in self.video.codecs:
            return None
        return SmallStream(
            *size,
            fps=min(self.video.sub_fps, self.camera.fps),
            bitrate=self.video.sub_bitrate_kbps * 1000,
        )

    @property
    def low_layer(self) -> SmallStream | None:
        """The viewers' low layer (`video.low_bitrate_kbps`): the small picture at the
        camera's full rate, if there is a small picture, H.264 is made, and the low
        layer is really lower than the main stream."""
        size = self.camera.lores_dimensions
        bitrate = self.video.low_bitrate_kbps
        if size is None or "h264" not in self.video.codecs or not bitrate:
            return None
        if bitrate >= self.video.bitrate_kbps or size == self.camera.dimensions:
            return None
        return SmallStream(*size, fps=self.camera.fps, bitrate=bitrate * 1000)


@dataclass(frozen=True)
class SmallStream:
    width: int
    height: int
    fps: int
    bitrate: int  # bits per second


def _problems(error: ValidationError) -> dict[str, str]:
    """Each problem's dotted key and what is wrong, in one line each."""
    found: dict[str, str] = {}
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = problem["msg"].removeprefix("Value error, ")
        found.setdefault(key, message)
    return found


def build_config(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        problems = _problems(error)
        key, message = next(iter(problems.items()))
        line = f"unknown key {key}" if message == "unknown key" else f"{key}: {message}"
        raise ConfigError(line, problems) from None


def load_config(path: Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read `path` (if any), apply flag `overrides` section by section, and validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return build_config(with_overrides(data, overrides or {}))


def with_overrides(data: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A config file's tables with the command line's values over them."""
    merged = dict(data)
    for section, values in overrides.items():
        current = merged.get(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"{section}: expected a table")
        merged[section] = {**current, **values}
    return merged
