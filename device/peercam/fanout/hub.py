"""The fan-out hub: every viewer of a codec receives the same encoded frames.

Each subscriber has its own bounded queue, so a slow viewer never holds back the
encoder or the other viewers. When a queue overflows, what it holds is discarded and
the subscriber skips ahead to the next keyframe (asking the encoder for one), the only
point where a decoder can resume cleanly.

A subscriber that can take a frame at once, without waiting (a viewer's frame sender
with a socket of its own), may be handed each frame directly as it is published, on
the loop, instead of being woken to fetch it: what it declines is queued as above.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from peercam.media import EncodedFrame

# Takes a frame now and says True, or says False and it is queued for `get()`.
DirectDelivery = Callable[[EncodedFrame], bool]


class SubscriptionClosed(Exception):
    pass


class FrameFeed(Protocol):
    """What a viewer's sender takes frames from: one hub's `Subscription`, or a
    `LayerFeed` (layer_feed.py) moving between hubs."""

    def start(self, direct: DirectDelivery | None = None) -> None: ...

    async def get(self) -> EncodedFrame: ...

    def close(self) -> None: ...


class Subscription:
    def __init__(self, hub: StreamHub, capacity: int, needs_keyframe: bool) -> None:
        self._hub = hub
        self._queue: deque[EncodedFrame] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._closed = False
        # A subscription made at offer time starts receiving only when its sender first
        # asks for a frame: frames queued during ICE/DTLS would only arrive late, and the
        # keyframe it needs is best requested when it can be sent at once.
        self._started = False
        self._direct: DirectDelivery | None = None
        self.waiting_for_keyframe = needs_keyframe
        self.dropped = 0

    def _offer(self, frame: EncodedFrame) -> int:
        """Queue `frame`; return how many frames were dropped making room."""
        if not self._started or self._closed:
            return 0
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                return 0
            self.waiting_for_keyframe = False
        # Only behind an empty queue: frames leave in the order they came.
        if self._direct is not None and not self._queue and self._direct(frame):
            return 0
        dropped = 0
        if len(self._queue) >= self._capacity:
            dropped = len(self._queue)
            self._queue.clear()
            if self._hub.has_keyframes and not frame.keyframe:
                self.waiting_for_keyframe = True
                self._hub.request_keyframe("overflow")
                dropped += 1
                self.dropped += dropped
                return dropped
            self.dropped += dropped
        self._queue.append(frame)
        self._ready.set()
        return dropped

    def start(self, direct: DirectDelivery | None = None) -> None:
        """Begin receiving (the first `get()` does it too). With `direct`, each frame
        is first offered to it as it is published."""
        self._direct = direct
        if not self._started and not self._closed:
            self._started = True
            if self.waiting_for_keyframe:
                self._hub.request_keyframe("new-viewer")

    async def get(self) -> EncodedFrame:
        if not self._started:
            self.start(self._direct)
        while not self._queue:
            if self._closed:
                raise SubscriptionClosed
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._direct = None
            self._queue.clear()
            self._ready.set()
            self._hub._remove(self)


class StreamHub:
    """One per codec. The encoder publishes; subscriptions receive."""

    def __init__(
        self,
        codec: str,
        has_keyframes: bool,
        request_keyframe: Callable[[str], None],
        on_drop: Callable[[int], None] = lambda count: None,
        on_empty: Callable[[], None] = lambda: None,
    ) -> None:
        self.codec = codec
        self.has_keyframes = has_keyframes
        self.request_keyframe = request_keyframe
        self._on_drop = on_drop
        self._on_empty = on_empty
        self._subscriptions: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, capacity: int) -> Subscription:
        subscription = Subscription(self, capacity, needs_keyframe=self.has_keyframes)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, frame: EncodedFrame) -> None:
        dropped = 0
        # A copy: a direct delivery may end its subscription, which leaves this set.
        for subscription in tuple(self._subscriptions):
            dropped += subscription._offer(frame)
        if dropped:
            self._on_drop(dropped)

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            self._on_empty()
