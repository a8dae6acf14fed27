"""One viewer's video taken from whichever quality layer its path carries.

A viewer keeps one video track while it moves between layers (each encoded once for
all, in its own hub). A switch subscribes to the target layer, which asks its encoder
for a keyframe; the old layer's frames keep flowing until that keyframe arrives, and
from it on only the target's do: the decoder resumes cleanly at the keyframe, and the
picture never stops meanwhile. Sequence numbers stay continuous because the viewer's
sender numbers what it is handed; timestamps because every layer stamps frames on one
clock (media.MEDIA_EPOCH) — except that two encoders finish the same capture at
different moments, so the first frames after a switch may carry a time the viewer
has already had: those are moved just after it (one 90 kHz tick each), since a
timestamp that goes back or repeats is a reordered or duplicate frame to the viewer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from peercam.fanout.frame_budget import FrameBudget
from peercam.fanout.hub import DirectDelivery, Subscription, SubscriptionClosed
from peercam.media import EncodedFrame, Layer

_MASK = 0xFFFFFFFF
_HALF = 0x80000000


class LayerFeed:
    """Feeds a viewer's sender like one `Subscription` (start, get, close).

    `subscribe(layer)` opens a subscription to a layer's hub (starting its encoder if
    idle); `released()` is told after a layer's subscription was closed, so that an
    encoder nobody needs any more can be stopped.
    """

    def __init__(
        self,
        subscribe: Callable[[Layer], Subscription],
        layer: Layer,
        released: Callable[[], None],
        on_switched: Callable[[Layer], None] = lambda layer: None,
    ) -> None:
        self._subscribe = subscribe
        self._released = released
        self._on_switched = on_switched
        self.layer = layer  # what the viewer gets now
        self.target = layer  # what it is being moved to (the same when not moving)
        self._current = subscribe(layer)
        self._pending: Subscription | None = None
        self._direct: DirectDelivery | None = None
        self._started = False
        self._closed = False
        self._last_timestamp: int | None = None
        self._budget: FrameBudget | None = None
        self.switches = 0

    def start(self, direct: DirectDelivery | None = None) -> None:
        self._direct = direct
        self._started = True
        self._current.start(self._take_current)
        if self._pending is not None:
            self._pending.start(self._take_pending)

    async def get(self) -> EncodedFrame:
        if not self._started:  # a sender that only ever asks (aiortc's own loop)
            self.start(self._direct)
        while True:
            subscription = self._current
            try:
                frame = await subscription.get()
            except SubscriptionClosed:
                if self._closed or subscription is self._current:
                    raise
                continue  # switched meanwhile: on with the new layer
            if self._budget is not None and self._direct is None:
                if not self._budget.admit(frame, time.monotonic()):
                    continue
            return self._monotonic(frame)

    def limit_to(self, bitrate: int | None) -> None:
        """Send no more than `bitrate` (whole groups of pictures, frame_budget.py), for
        a path that carries less than even the layer it is on; None: no limit."""
        if bitrate is None:
            self._budget = None
        elif self._budget is None:
            self._budget = FrameBudget(bitrate, time.monotonic())
        else:
            self._budget.bitrate = bitrate

    @property
    def limit(self) -> int | None:
        return None if self._budget is None else self._budget.bitrate

    def switch_to(self, layer: Layer) -> None:
        """Move to `layer` at its next keyframe (asked for now); back to the layer the
        viewer is on, or to another, calls off a move not yet made."""
        if self._closed or layer == self.target:
            return
        # Subscribed first: should that fail (its encoder or camera will not start),
        # the viewer is where it was, and a later move may try again.
        pending = self._subscribe(layer) if layer != self.layer else None
        if self._pending is not None:
            self._pending.close()
            self._released()
        self._pending, self.target = pending, layer
        if pending is not None and self._started:
            pending.start(self._take_pending)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in (self._current, self._pending):
            if subscription is not None:
                subscription.close()
        self._pending = None

    def _take_current(self, frame: EncodedFrame) -> bool:
        direct = self._direct
        if direct is None:
            return False  # queued: `get` hands it on
        if self._budget is not None and not self._budget.admit(frame, time.monotonic()):
            return True  # left out
        stamped = self._monotonic_peek(frame)
        if not direct(stamped):
            return False
        self._last_timestamp = stamped.rtp_timestamp
        return True

    def _take_pending(self, frame: EncodedFrame) -> bool:
        """The target layer's first frame, a keyframe (its subscription waits for
        one): the switch is made here, and the frame goes on as the current layer's."""
        pending = self._pending
        if pending is None or self._closed:
            return True  # called off meanwhile: nothing more from it
        old, self._current, self._pending = self._current, pending, None
        self.layer = self.target
        self.switches += 1
        old.close()  # wakes a `get` waiting on it, which goes on with the new layer
        self._released()
        pending.start(self._take_current)
        self._on_switched(self.layer)
        return self._take_current(frame)

    def _monotonic_peek(self, frame: EncodedFrame) -> EncodedFrame:
        last = self._last_timestamp
        if last is None or 0 < (frame.rtp_timestamp - last) & _MASK < _HALF:
            return frame
        return dataclasses.replace(frame, rtp_timestamp=(last + 1) & _MASK)

    def _monotonic(self, frame: EncodedFrame) -> EncodedFrame:
        stamped = self._monotonic_peek(frame)
        self._last_timestamp = stamped.rtp_timestamp
        return stamped
