"""What the pipeline hands a camera's captures to, and what makes one codec's frames.

A `FrameSink` says which of a source's outputs it takes (raw pictures and samples,
the camera's own encoded frames, or its small preview stream); the pipeline asks the
source for exactly the outputs its running sinks take and hands each capture to the
sinks that take that kind. A `Producer` is a sink that makes one codec's shared
frames: a software encoder fed raw frames, or a passthrough of the camera's encoder.
A picture tap (motion detection) is a sink too, and goes through the same routing.
"""

from __future__ import annotations

import enum
from typing import Protocol

from peercam.encode.codecs import CodecSpec
from peercam.media import CapturedAudio, CapturedEncoded, CapturedPreview, CapturedVideo

Delivered = CapturedVideo | CapturedAudio | CapturedPreview | CapturedEncoded


class Takes(enum.Enum):
    RAW = "raw frames"
    ENCODED = "the camera's encoded frames"
    PREVIEW = "the camera's low-resolution stream"


def kind_of(captured: Delivered) -> Takes:
    if isinstance(captured, CapturedEncoded):
        return Takes.ENCODED
    if isinstance(captured, CapturedPreview):
        return Takes.PREVIEW
    return Takes.RAW


class FrameSink(Protocol):
    @property
    def takes(self) -> Takes: ...

    @property
    def stamps_frames(self) -> bool:
        """Writes on the picture it is handed (an encoder sets its pts and picture
        type): a second such sink of one picture gets a copy of its own."""
        ...

    @property
    def running(self) -> bool: ...

    def feed(self, captured: Delivered) -> None:
        """Take one capture of the kind `takes` names; ignore any other."""
        ...


class Producer(FrameSink, Protocol):
    spec: CodecSpec

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def request_keyframe(self, reason: str) -> None: ...
