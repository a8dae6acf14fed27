"""What a call's offer and answer settle for its audio (RFC 3264): the codec peercam
sends (one of the microphone's shared encoders), the payload types it takes the
phone's audio and key presses on."""

from __future__ import annotations

from dataclasses import dataclass

from peercam.audio.rtp_audio_in import Decoding
from peercam.encode.codecs import BY_NAME, CodecSpec
from peercam.sip.sdp import AudioDescription, Format

# The codecs a phone may get, by their SDP name; Opus's dynamic type is peercam's pick.
SDP_NAMES = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "OPUS"}
OPUS_PAYLOAD_TYPE = 111
EVENT_PAYLOAD_TYPES = {8000: 101, 48000: 102}  # RFC 4733 events at each clock rate


@dataclass(frozen=True)
class AudioPlan:
    codec: CodecSpec  # what peercam sends
    send_payload_type: int
    remote: tuple[str, int]  # where the phone listens
    receive: dict[int, Decoding]  # the phone's audio by payload type
    events: frozenset[int]  # the phone's RFC 4733 key presses by payload type
    send_events: int | None  # the type to send key presses with (none are sent yet)
    sends: bool = True  # False when the phone takes nothing (its a=sendonly, a=inactive)


def sdp_format(codec: str) -> Format:
    spec = BY_NAME[codec]
    if spec.static_payload_type is not None:
        return Format(spec.static_payload_type, SDP_NAMES[codec], spec.clock_rate)
    return Format(OPUS_PAYLOAD_TYPE, "OPUS", spec.clock_rate, 2, "useinbandfec=1")


def offer_formats(codecs: list[str]) -> list[Format]:
    """peercam's offer: its codecs in the order given, then telephone-events at each
    clock rate among them (RFC 4733 §2.1)."""
    formats = [sdp_format(codec) for codec in codecs]
    rates = sorted({f.clock_rate for f in formats})
    events = [
        Format(EVENT_PAYLOAD_TYPES[rate], "TELEPHONE-EVENT", rate, fmtp="0-16")
        for rate in rates
        if rate in EVENT_PAYLOAD_TYPES
    ]
    return formats + events


def _codec_of(format_: Format) -> str | None:
    return next((c for c, name in SDP_NAMES.items() if name == format_.name), None)


def _decoding(codec: str) -> Decoding:
    spec = BY_NAME[codec]
    return Decoding(spec.decoder, spec.audio_rate)


def from_answer(offered: list[Format], answer: AudioDescription) -> AudioPlan | None:
    """The plan after the phone answered peercam's offer: the first codec of its
    answer that was offered. None: the phone took none of them, or refused audio."""
    offered_names = {f.name for f in offered}
    return _plan(answer, [f for f in answer.codecs() if f.name in offered_names], offered)


def from_offer(offer: AudioDescription, codecs: list[str]) -> tuple[AudioPlan, list[Format]] | None:
    """The plan for a phone's offer, and the formats of peercam's answer (the first of
    its codecs peercam makes, with the offer's payload types, RFC 3264 §6.1)."""
    wanted = {SDP_NAMES[c] for c in codecs}
    chosen = next((f for f in offer.codecs() if f.name in wanted), None)
    if chosen is None:
        return None
    event_rate = 8000 if chosen.name == "G722" else chosen.clock_rate
    event = offer.telephone_event(event_rate)
    answer = [chosen] + ([event] if event is not None else [])
    plan = _plan(offer, [chosen], answer)
    return (plan, answer) if plan is not None else None


def _plan(remote: AudioDescription, common: list[Format], local: list[Format]) -> AudioPlan | None:
    if remote.port == 0 or not common or "SAVP" in remote.profile:
        return None
    first = common[0]
    codec = _codec_of(first)
    if codec is None:
        return None
    receive: dict[int, Decoding] = {}
    for format_ in common:
        name = _codec_of(format_)
        if name is not None:
            receive[format_.payload_type] = _decoding(name)
    # A phone should send with the offer's types; a careless one sends with its own.
    for format_ in local:
        name = _codec_of(format_)
        if name is not None and any(f.name == format_.name for f in common):
            receive.setdefault(format_.payload_type, _decoding(name))
    events = {f.payload_type for f in remote.formats + local if f.name == "TELEPHONE-EVENT"}
    event_rate = 8000 if first.name == "G722" else first.clock_rate
    send_event = remote.telephone_event(event_rate)
    return AudioPlan(
        codec=BY_NAME[codec],
        send_payload_type=first.payload_type,
        remote=(remote.address, remote.port),
        receive=receive,
        events=frozenset(events - set(receive)),
        send_events=send_event.payload_type if send_event is not None else None,
        sends=remote.direction not in ("sendonly", "inactive"),
    )
