"""Stand-in for libcamera's Python bindings: only what peercam passes to picamera2."""

from __future__ import annotations


class Transform:
    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose

    def __repr__(self) -> str:
        return f"Transform(hflip={self.hflip}, vflip={self.vflip}, transpose={self.transpose})"
