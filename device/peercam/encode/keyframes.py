"""When a keyframe request may be answered.

Every new viewer and every PLI/FIR asks for a keyframe. Answering each at once would
let a crowd (or one lossy link) turn the stream into nothing but keyframes, which cost
several times a normal frame. Requests are therefore merged: one is honoured at most
every `min_gap` seconds, and a request that arrives inside the gap is kept, not
dropped, so the viewer that asked still gets its keyframe as soon as the gap ends.
Natural keyframes (the GOP) do not count against the gap: a viewer that arrives just
after one has missed it and should not wait for the gap to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KeyframePolicy:
    min_gap: float
    pending: bool = False
    last_forced_at: float = field(default=float("-inf"))

    def request(self) -> None:
        self.pending = True

    def should_force(self, now: float) -> bool:
        """Whether the frame about to be encoded at `now` must be a keyframe."""
        return self.pending and now - self.last_forced_at >= self.min_gap

    def keyframe_sent(self, now: float, forced: bool) -> None:
        # Any keyframe, natural or forced, satisfies whoever was waiting.
        if forced:
            self.last_forced_at = now
        self.pending = False
