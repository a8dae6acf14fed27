"""The playout-delay RTP header extension: the sender tells the browser how long it may
hold video before showing it.

Left to itself, Chromium holds each frame in its jitter buffer (7-8 ms here) and then
schedules it for smooth playout. With a minimum of 0 and a small maximum it switches
to rendering each frame as soon as it is decoded. Measured with bench/glass_to_glass.py
(640x480@30 H.264, 10 page loads of 4 s each per row, same machine, same run):

    not sent (browser's choice)   p50 26-35 ms  p95 37-53 ms   jitter buffer 7.7 ms
    min 0, max 0                  p50 28-35 ms  p95 46-52 ms   jitter buffer 0.2 ms
    min 0, max 100 ms             p50 13-17 ms  p95 19-21 ms   jitter buffer 0.2 ms

So the daemon sends 0-100 ms by default (`webrtc.playout_delay_ms`). Max 0 empties
the jitter buffer too, yet shows frames later: it is not the same render path. A
browser that does not offer the extension never sees it (only sent when negotiated).

aiortc 1.16 neither negotiates nor writes this extension: it is added to aiortc's
list of video header extensions (so answers accept it when the offer has it), and a
viewer's sender gets a header map that appends it to every packet.
"""

from __future__ import annotations

from aiortc import RTCRtpSender, rtp
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
UNIT_MS = 10  # the extension counts in 10 ms steps, 12 bits each for min and max
MAX_MS = 4095 * UNIT_MS


def offer_in_answers() -> None:
    """Let aiortc accept the extension in answers (idempotent, process-wide)."""
    video = HEADER_EXTENSIONS["video"]
    if not any(extension.uri == URI for extension in video):
        # The id is only a default: an answer uses the offer's id.
        video.append(RTCRtpHeaderExtensionParameters(id=12, uri=URI))


def encode(min_ms: int, max_ms: int) -> bytes:
    if not 0 <= min_ms <= max_ms <= MAX_MS:
        raise ValueError(f"playout delay must satisfy 0 <= min <= max <= {MAX_MS} ms")
    value = (min_ms // UNIT_MS) << 12 | (max_ms // UNIT_MS)
    return value.to_bytes(3, "big")


class PlayoutDelayHeaders(rtp.HeaderExtensionsMap):
    """aiortc's header map, plus the playout delay on every packet once negotiated."""

    def __init__(self, min_ms: int, max_ms: int) -> None:
        super().__init__()
        self._value = encode(min_ms, max_ms)
        self._id: int | None = None

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        self._id = next((e.id for e in parameters.headerExtensions if e.uri == URI), None)

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, data = super().set(values)
        if self._id is None:
            return profile, data
        pairs = rtp.unpack_header_extensions(profile, data) if data else []
        pairs.append((self._id, self._value))
        return rtp.pack_header_extensions(pairs)


def ask_for_playout_delay(sender: RTCRtpSender, min_ms: int, max_ms: int) -> None:
    """Give a video `sender` (before it starts) the header map that sends the delay.
    tests/test_rtc_hooks.py checks the attribute still exists."""
    name = "_RTCRtpSender__rtp_header_extensions_map"
    if not hasattr(sender, name):
        raise RuntimeError("this aiortc version lacks the sender hook peercam relies on")
    setattr(sender, name, PlayoutDelayHeaders(min_ms, max_ms))
