"""Encoder backends: a codec library behind `encode(captured, force_keyframe)`.

Backends are blocking and not thread-safe; the shared encoder calls each from one
worker thread only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from peercam.media import Captured


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    data: bytes
    keyframe: bool
    # Audio: the samples it holds, in the codec's clock, so that RTP timestamps count
    # samples (encode/sample_clock.py). 0 for video, stamped from capture time.
    samples: int = 0


class EncoderBackend(ABC):
    codec: str

    @abstractmethod
    def encode(self, captured: Captured, force_keyframe: bool) -> list[EncodedChunk]: ...

    @abstractmethod
    def close(self) -> None:
        """Free the codec; called from the worker thread after the last encode."""
