"""A viewer's frames cut to what its path carries, when even the lowest layer is more.

H.264 from the shared encoders has no frame a decoder can do without (each P frame
refers to the one before): past a keyframe, the only frames that may be left out are
all of them up to the next keyframe. So a viewer whose path carries less than its
layer is sent each group of pictures from its keyframe for as long as its budget
lasts, and nothing after that until the next keyframe: the picture moves, then holds
still, instead of arriving broken (a path that drops what it cannot carry leaves
almost no frame whole, and the repairs asked for load it more).
"""

from __future__ import annotations

from peercam.media import EncodedFrame

# At most this many seconds of budget saved up (a group of pictures begins with a
# keyframe several times a P frame's size); a keyframe may overdraw it.
SAVED_SECONDS = 1.0


class FrameBudget:
    """Admits frames within `bitrate`, whole groups of pictures from their keyframe."""

    def __init__(self, bitrate: int, now: float) -> None:
        self.bitrate = bitrate
        self._credit = bitrate * SAVED_SECONDS / 8  # bytes
        self._at = now
        self._skipping = False
        self.skipped = 0

    def admit(self, frame: EncodedFrame, now: float) -> bool:
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._credit = min(
            self._credit + self.bitrate * elapsed / 8, self.bitrate * SAVED_SECONDS / 8
        )
        size = sum(map(len, frame.payloads))
        if frame.keyframe:
            # Whenever the budget is not overdrawn: a keyframe larger than all the
            # budget saved would otherwise never be sent at all.
            self._skipping = self._credit < 0
        elif not self._skipping and size > self._credit:
            self._skipping = True
        if self._skipping:
            self.skipped += 1
            return False
        self._credit -= size
        return True
