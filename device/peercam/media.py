"""Plain data that flows through the pipeline: captured media in, encoded frames out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import av

Kind = Literal["audio", "video"]
# A video codec's encodes: the camera's full picture; a smaller second stream where
# one is configured (for NVRs' detection: RTSP /live/sub, ONVIF's profile "sub", at a
# thinned rate); and the same small picture at the camera's full rate and a low
# bitrate, for viewers whose path does not carry the main one ("low").
Layer = Literal["main", "sub", "low"]
MAIN: Layer = "main"
SUB: Layer = "sub"
LOW: Layer = "low"

# One clock for audio and video: RTP timestamps of both kinds count from this instant,
# so the receiver's lip sync (through RTCP sender reports) lines up.
MEDIA_EPOCH = time.monotonic()


@dataclass(frozen=True, slots=True)
class CapturedVideo:
    image: av.VideoFrame
    captured_at: float  # time.monotonic() when the sensor (or pattern) produced it


def own_copy(captured: CapturedVideo) -> CapturedVideo:
    """The same picture in a frame of its own, for a second encoder: an encoder stamps
    its pts and picture type on the frame it encodes, and two encoders in two threads
    stamping one frame feed each other's timestamps to libvpx, which then refuses
    every frame."""
    image = captured.image
    try:
        copy = av.VideoFrame.from_ndarray(image.to_ndarray(), format=image.format.name)
    except (ValueError, TypeError, NotImplementedError):  # a format numpy cannot hold
        copy = image.reformat(format="yuv420p")
    return CapturedVideo(copy, captured.captured_at)


@dataclass(frozen=True, slots=True)
class CapturedPreview:
    """A small picture from the camera's second, low-resolution stream (a Pi camera's
    "lores"): for analysis such as motion detection, and the source of the small
    encoded layer ("sub"), never for viewers of the main one."""

    image: av.VideoFrame
    captured_at: float


@dataclass(frozen=True, slots=True)
class CapturedAudio:
    samples: av.AudioFrame
    captured_at: float


@dataclass(frozen=True, slots=True)
class CapturedEncoded:
    """A frame the camera encoded by itself (a hardware encoder, an H.264 camera)."""

    codec: str
    data: bytes  # one access unit; Annex-B for H.264
    keyframe: bool
    captured_at: float


Captured = CapturedVideo | CapturedAudio


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded access unit, produced once and sent to every viewer of its codec.

    `payloads` are ready RTP payloads (bitstream split and fragmented once, in the
    encoder's thread); each viewer's sender only adds its own header, SRTP and socket.
    """

    codec: str
    data: bytes
    keyframe: bool
    captured_at: float
    rtp_timestamp: int
    payloads: tuple[bytes, ...]
    sequence: int = field(default=0)  # per-codec frame counter, for tests and metrics
    # The payloads' bytes together: counted once here, in the encoder's thread, rather
    # than once per viewer on the event loop.
    payload_bytes: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload_bytes", sum(map(len, self.payloads)))


def rtp_timestamp(captured_at: float, clock_rate: int) -> int:
    return int((captured_at - MEDIA_EPOCH) * clock_rate) & 0xFFFFFFFF
