"""DTMF from a phone as RFC 4733 telephone-events: the digits pressed, each told once.

Every RTP packet of one key press carries the same timestamp (the press's start) and
a growing duration, the last ones (sent three times) the end bit (RFC 4733 §2.5.1).
A press is told at its first packet, so the door answers at once, and never again
for that timestamp, however many packets, repeats or reorders follow."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

# RFC 4733 §3.2: events 0-15 are the keypad; 16 is flash, which opens no door.
KEYS = "0123456789*#ABCD"
_REMEMBERED = 16  # presses kept to recognise their later packets


@dataclass(frozen=True)
class KeyPress:
    digit: str
    volume_dbm0: int  # -dBm0 of the tone, 0-63 (RFC 4733 §2.3.4)


class DtmfReceiver:
    def __init__(self) -> None:
        self._seen: deque[tuple[int, int]] = deque(maxlen=_REMEMBERED)  # (SSRC, timestamp)

    def receive(self, ssrc: int, timestamp: int, payload: bytes) -> KeyPress | None:
        """One telephone-event RTP packet's payload: the key, if this press is new."""
        if len(payload) < 4:
            return None  # not an event block: ignored, as any malformed packet is
        event, flags, _duration = struct.unpack("!BBH", payload[:4])
        if event >= len(KEYS) or (ssrc, timestamp) in self._seen:
            return None
        self._seen.append((ssrc, timestamp))
        return KeyPress(KEYS[event], flags & 0x3F)


def event_payload(digit: str, duration: int, end: bool, volume: int = 10) -> bytes:
    """A telephone-event block, as a phone sends one."""
    return struct.pack("!BBH", KEYS.index(digit), (0x80 if end else 0) | volume, duration)
