"""The SDP an RTSP DESCRIBE answers with (RFC 2326 appendix C, RFC 4566).

One media section per track, each with its own `a=control:trackID=N` (clients append
it to Content-Base); H.264 with the stream's own parameter sets (RFC 6184
sprop-parameter-sets, profile-level-id from the SPS), so a client that reads them
from the SDP (FFmpeg builds its decoder's extradata from them) need not wait for an
in-band SPS; audio by its RFC 3551 static payload type where it has one.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from peercam.encode.codecs import CodecSpec
from peercam.media import MAIN, Layer

FIRST_DYNAMIC_PAYLOAD_TYPE = 96


@dataclass(frozen=True)
class Track:
    control: str  # "trackID=0"
    codec: CodecSpec
    payload_type: int
    fmtp: str = ""
    layer: Layer = MAIN  # video's: the main picture or the small stream


def h264_fmtp(sps: bytes, pps: bytes) -> str:
    """`sps` and `pps`: NAL units without start codes."""
    sets = ",".join(base64.b64encode(nal).decode() for nal in (sps, pps))
    return f"packetization-mode=1;profile-level-id={sps[1:4].hex()};sprop-parameter-sets={sets}"


def payload_types(codecs: list[CodecSpec]) -> list[int]:
    """Static types where RFC 3551 gives one, dynamic ones from 96 in order otherwise."""
    chosen: list[int] = []
    dynamic = FIRST_DYNAMIC_PAYLOAD_TYPE
    for codec in codecs:
        if codec.static_payload_type is not None:
            chosen.append(codec.static_payload_type)
        else:
            chosen.append(dynamic)
            dynamic += 1
    return chosen


# The ONVIF back-channel's medium (rtsp/backchannel.py): the client's choice of G.711
# law by payload type; GStreamer's rtspsrc takes the first listed.
BACKCHANNEL_MEDIA = ["m=audio 0 RTP/AVP 0 8", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"]


def session_description(
    tracks: list[Track], server_address: str, name: str, backchannel: str | None = None
) -> str:
    """`backchannel`: the control of an ONVIF back-channel medium to offer, if any."""
    family = "IP6" if ":" in server_address else "IP4"
    lines = [
        "v=0",
        f"o=- {secrets.randbits(32)} 1 IN {family} {server_address}",
        f"s={name}",
        f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
    ]
    for track in tracks:
        codec = track.codec
        lines += [
            f"m={codec.kind} 0 RTP/AVP {track.payload_type}",
            f"a=rtpmap:{track.payload_type} {codec.rtpmap}",
        ]
        if track.fmtp:
            lines.append(f"a=fmtp:{track.payload_type} {track.fmtp}")
        lines += ["a=recvonly", f"a=control:{track.control}"]
    if backchannel is not None:
        lines += [*BACKCHANNEL_MEDIA, "a=sendonly", f"a=control:{backchannel}"]
    return "\r\n".join(lines) + "\r\n"
