"""The audio part of SIP's offer/answer (RFC 3264 on RFC 8866's SDP): what a phone
offers, and peercam's answer or offer. peercam's side: one audio stream, the codecs
it encodes (encode/codecs.py names them), and RFC 4733 telephone-events for DTMF."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from peercam.sip.message import SipError, is_number

# RFC 3551's static payload types peercam can take without an rtpmap.
STATIC = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MAX_SDP = 16_384


@dataclass(frozen=True)
class Format:
    payload_type: int
    name: str  # upper case: PCMU, PCMA, G722, OPUS, TELEPHONE-EVENT
    clock_rate: int
    channels: int = 1
    fmtp: str = ""


@dataclass
class AudioDescription:
    """One side's audio: where it listens, what it takes, which way it flows."""

    address: str
    port: int  # 0: the stream is refused
    formats: list[Format] = field(default_factory=list)
    direction: str = "sendrecv"
    ptime: int | None = None
    profile: str = "RTP/AVP"  # RTP/SAVP: SRTP, which peercam does not speak to phones

    def codecs(self) -> list[Format]:
        return [f for f in self.formats if f.name != "TELEPHONE-EVENT"]

    def telephone_event(self, clock_rate: int) -> Format | None:
        return next(
            (f for f in self.formats if f.name == "TELEPHONE-EVENT" and f.clock_rate == clock_rate),
            None,
        )


def parse_audio(body: bytes) -> AudioDescription:
    """The first audio stream of an SDP body (a phone's offer or answer)."""
    found = _parse(body, "audio")
    if found is None:
        raise SipError("no audio stream in the SDP")
    return found


def parse_video(body: bytes) -> AudioDescription | None:
    """The first video stream of an SDP body, if it has one."""
    return _parse(body, "video")


def count_streams(body: bytes) -> list[tuple[str, str]]:
    """Every m= line's kind, and its transport and formats, in order: an answer has as
    many (RFC 3264 §6), refusing those it does not take with port 0."""
    streams = []
    for line in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 4:
                streams.append((parts[0], " ".join(parts[2:])))
    return streams


def _parse(body: bytes, media: str) -> AudioDescription | None:
    if len(body) > _MAX_SDP:
        raise SipError(f"SDP of {len(body)} bytes")
    try:
        lines = body.decode("utf-8").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError as error:
        raise SipError("SDP is not UTF-8") from error
    session_address: str | None = None
    audio: AudioDescription | None = None
    in_audio = False
    rtpmaps: dict[int, tuple[str, int, int]] = {}
    fmtps: dict[int, str] = {}
    payload_types: list[int] = []
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if audio is not None:
                break  # the stream is done; later ones are not this call's
            parts = value.split()
            in_audio = len(parts) >= 4 and parts[0] == media
            if in_audio:
                if not is_number(parts[1]) or int(parts[1]) > 65535:
                    raise SipError(f"{media} port {parts[1][:10]!r}")
                if not parts[2].startswith("RTP/AVP") and parts[2] != "RTP/SAVP":
                    raise SipError(f"{media} transport {parts[2][:20]!r}")
                if not all(is_number(p) and int(p) < 128 for p in parts[3:]):
                    raise SipError(f"{media} payload types")
                payload_types = [int(p) for p in parts[3:]]
                audio = AudioDescription(session_address or "", int(parts[1]), profile=parts[2])
        elif kind == "c":
            address = _connection_address(value)
            if audio is None and not in_audio:
                session_address = address
            elif in_audio and audio is not None:
                audio.address = address
        elif kind == "a" and (in_audio or audio is None):
            name, _, rest = value.partition(":")
            if name in DIRECTIONS and audio is not None:
                audio.direction = name
            elif name == "rtpmap" and in_audio:
                _rtpmap(rest, rtpmaps)
            elif name == "fmtp" and in_audio:
                number, _, params = rest.partition(" ")
                if is_number(number):
                    fmtps[int(number)] = params.strip()
            elif name == "ptime" and in_audio and audio is not None and is_number(rest.strip()):
                audio.ptime = int(rest.strip())
    if audio is None:
        return None
    if not audio.address:
        raise SipError(f"no connection address for the {media} stream")
    for payload_type in payload_types:
        known = rtpmaps.get(payload_type) or STATIC.get(payload_type)
        if known is not None:
            name, rate, channels = known
            audio.formats.append(
                Format(payload_type, name, rate, channels, fmtps.get(payload_type, ""))
            )
    return audio


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SipError(f"connection line {value[:60]!r}")
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # A name is allowed (RFC 8866 §5.7) but peercam sends media to addresses only.
        raise SipError(f"connection address {address[:60]!r} is not an IP address") from None
    return address


def _rtpmap(text: str, into: dict[int, tuple[str, int, int]]) -> None:
    number, _, encoding = text.strip().partition(" ")
    parts = encoding.strip().split("/")
    if not is_number(number) or len(parts) < 2 or not is_number(parts[1]):
        raise SipError(f"rtpmap {text[:60]!r}")
    channels = int(parts[2]) if len(parts) > 2 and is_number(parts[2]) else 1
    into[int(number)] = (parts[0].upper(), int(parts[1]), channels)


@dataclass(frozen=True)
class Choice:
    """What both sides agreed on: the codec, and telephone-events if the phone takes them."""

    codec: Format
    telephone_event: Format | None


def choose(offer: AudioDescription, available: list[str]) -> Choice | None:
    """The first codec in the phone's offer that peercam makes (`available`): the
    offer's order is the phone's preference (RFC 3264 §6.1). None: nothing in common."""
    wanted = {name.upper() for name in available}
    codec = next((f for f in offer.codecs() if f.name in wanted), None)
    if codec is None:
        return None
    # RFC 4733 §2.1: events at the codec's own RTP clock rate.
    rate = 8000 if codec.name == "G722" else codec.clock_rate
    return Choice(codec, offer.telephone_event(rate))


@dataclass(frozen=True)
class VideoSection:
    """A video stream in peercam's SDP: `port` 0 refuses the phone's (its formats are
    then only named, as RFC 3264 §6 asks)."""

    port: int
    formats: list[Format]
    direction: str = "sendonly"  # peercam shows its camera; it takes no picture back


def describe(
    address: str, port: int, formats: list[Format], session_id: int, version: int,
    direction: str = "sendrecv", ptime: int = 20, video: VideoSection | None = None,
    refused: list[tuple[str, str]] | None = None, order: list[str] | None = None,
) -> bytes:  # fmt: skip
    """peercam's SDP (an offer, or an answer with the formats `choose` gave), with a
    video stream when `video` is given. An answer lists its streams in the offer's
    `order` of kinds (RFC 3264 §6 pairs them by position): the first audio and the
    first video are peercam's, every other is the next of `refused`, port 0."""
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=peercam {session_id} {version} IN {family} {address}",
        "s=peercam",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    audio = [f"m=audio {port} RTP/AVP {' '.join(str(f.payload_type) for f in formats)}"]
    for f in formats:
        channels = f"/{f.channels}" if f.channels != 1 else ""
        audio.append(f"a=rtpmap:{f.payload_type} {_sdp_name(f.name)}/{f.clock_rate}{channels}")
        if f.fmtp:
            audio.append(f"a=fmtp:{f.payload_type} {f.fmtp}")
    audio += [f"a=ptime:{ptime}", f"a={direction}"]
    blocks = {"audio": audio, "video": _video_lines(video) if video is not None else []}
    others = iter([f"m={kind} 0 {rest}"] for kind, rest in refused or [])
    if order is None:
        order = ["audio", "video"] + ["refused"] * len(refused or [])
    for kind in order:
        block = blocks.pop(kind, None) if kind in ("audio", "video") else None
        lines += block if block else next(others, [])
    return ("\r\n".join(lines) + "\r\n").encode()


def _video_lines(video: VideoSection) -> list[str]:
    numbers = " ".join(str(f.payload_type) for f in video.formats)
    lines = [f"m=video {video.port} RTP/AVP {numbers}"]
    if video.port:
        for f in video.formats:
            lines.append(f"a=rtpmap:{f.payload_type} {f.name}/{f.clock_rate}")
            if f.fmtp:
                lines.append(f"a=fmtp:{f.payload_type} {f.fmtp}")
        lines.append(f"a={video.direction}")
    return lines


def _sdp_name(name: str) -> str:
    return {"OPUS": "opus", "TELEPHONE-EVENT": "telephone-event"}.get(name, name)
