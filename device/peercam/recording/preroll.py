"""The last few seconds of the shared encoded stream, always starting at a keyframe."""

from __future__ import annotations

from collections import deque

from peercam.media import EncodedFrame


class Preroll:
    """Video and audio frames as they were sent to viewers, oldest first.

    A clip can only start at a keyframe, so the buffer keeps everything from the
    newest keyframe that is at least `seconds` old: a clip's start is never later
    than `seconds` before its event, and at most one keyframe interval earlier.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._frames: deque[EncodedFrame] = deque()
        # Capture times of the keyframes held, oldest first.
        self._keyframes: deque[float] = deque()

    def add(self, frame: EncodedFrame, video: bool) -> None:
        if video:
            if frame.keyframe:
                self._keyframes.append(frame.captured_at)
            elif not self._keyframes:
                return  # nothing decodable yet
        elif not self._keyframes:
            return  # audio before the first picture would start the clip with no video
        if frame.captured_at < self._keyframes[0]:
            # Late (video encodes slower than audio): it belongs to a group already
            # dropped, and would come before the keyframe a clip must start with.
            return
        self._frames.append(frame)
        self._trim(frame.captured_at)

    def _trim(self, now: float) -> None:
        # Drop the oldest keyframe's group while the next keyframe is old enough to
        # cover the whole pre-roll by itself.
        while len(self._keyframes) >= 2 and self._keyframes[1] <= now - self.seconds:
            self._keyframes.popleft()
            start = self._keyframes[0]
            # Not only from the head: audio captured after the keyframe can be queued
            # before the old group's last picture. Frames captured at the same instant
            # as the keyframe but queued before it (audio) stay.
            self._frames = deque(f for f in self._frames if f.captured_at >= start)

    def frames(self) -> list[EncodedFrame]:
        return list(self._frames)

    def latest_group(self, video_codec: str) -> list[EncodedFrame]:
        """The video frames from the newest keyframe on: enough to decode the newest
        picture (a snapshot)."""
        group: list[EncodedFrame] = []
        for frame in reversed(self._frames):
            if frame.codec != video_codec:
                continue
            group.append(frame)
            if frame.keyframe:
                return group[::-1]
        return []

    def clear(self) -> None:
        self._frames.clear()
        self._keyframes.clear()

    def __len__(self) -> int:
        return len(self._frames)
