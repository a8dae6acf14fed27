"""picamera2/outputs/output.py (0.3.38): the base every encoder output must be."""

from __future__ import annotations

from typing import Any


class Output:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False
        self.needs_add_stream = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Receives each encoded frame; subclasses override it."""

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        """Encoders describe their stream here when they start (output.py:64-66)."""
