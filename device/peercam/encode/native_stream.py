"""Frames the camera encoded itself, passed through to every viewer unchanged.

A Pi's hardware encoder or a USB camera that speaks H.264 already does the one encode
the design allows; peercam only packetizes it once and fans it out. Keyframe requests
go to the camera's encoder, under the same rate limit as a software encoder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from peercam.capture.source import Source
from peercam.encode.codecs import H264, CodecSpec
from peercam.encode.keyframes import KeyframePolicy
from peercam.encode.producer import Delivered, Takes
from peercam.encode.shared_encoder import account_frame
from peercam.h264_bitstream import ParameterSetRepeater
from peercam.media import CapturedEncoded, EncodedFrame, rtp_timestamp
from peercam.metrics import Metrics

logger = logging.getLogger(__name__)


class NativeStream:
    """A Producer that passes the camera's own encoded frames of its codec through."""

    takes = Takes.ENCODED
    stamps_frames = False

    def __init__(
        self,
        spec: CodecSpec,
        source: Source[Any],
        publish: Callable[[EncodedFrame], None],
        metrics: Metrics,
        keyframe_min_gap: float = 0.5,
    ) -> None:
        self.spec = spec
        self.source = source
        self._publish = publish
        self._metrics = metrics
        self.keyframes = KeyframePolicy(keyframe_min_gap)
        self._packetizer = spec.packetizer()
        self._repeater = ParameterSetRepeater() if spec.name == H264.name else None
        self._running = False
        self._forced_outstanding = False
        self._retry: asyncio.TimerHandle | None = None
        self._sequence = 0

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if not self._running:
            self._running = True
            self._metrics.encoder_running.labels(self.spec.name).set(1)
            logger.info("%s passthrough from %s started", self.spec.name, self.source.name)

    async def stop(self) -> None:
        if self._running:
            self._running = False
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            self._metrics.encoder_running.labels(self.spec.name).set(0)
            logger.info("%s passthrough from %s stopped", self.spec.name, self.source.name)

    def request_keyframe(self, reason: str) -> None:
        self._metrics.keyframe_requests.labels(self.spec.name, reason).inc()
        self.keyframes.request()
        if self._retry is None:  # else a retry is already due when the gap ends
            self._force_if_due()

    def _retry_now(self) -> None:
        self._retry = None
        self._force_if_due()

    def _force_if_due(self) -> None:
        if not self._running or not self.keyframes.pending:
            return
        now = time.monotonic()
        if self.keyframes.should_force(now):
            if self.source.request_keyframe():
                self.keyframes.keyframe_sent(now, forced=True)
                self._forced_outstanding = True
            # Otherwise the request stays pending and the camera's next IDR answers it.
        else:
            # Inside the gap: ask again when it ends, rather than dropping the request.
            wait = self.keyframes.last_forced_at + self.keyframes.min_gap - now
            self._retry = asyncio.get_running_loop().call_later(wait, self._retry_now)

    def feed(self, captured: Delivered) -> None:
        if (
            not self._running
            or not isinstance(captured, CapturedEncoded)
            or captured.codec != self.spec.name
        ):
            return
        data = self._repeater.process(captured.data) if self._repeater else captured.data
        frame = EncodedFrame(
            codec=self.spec.name,
            data=data,
            keyframe=captured.keyframe,
            captured_at=captured.captured_at,
            rtp_timestamp=rtp_timestamp(captured.captured_at, self.spec.clock_rate),
            payloads=self._packetizer.payloads(data),
            sequence=self._sequence,
        )
        self._sequence += 1
        forced = frame.keyframe and self._forced_outstanding
        if frame.keyframe:
            self._forced_outstanding = False
        account_frame(self._metrics, self.spec.name, self.spec, frame, forced, time.monotonic())
        if frame.keyframe and not forced:
            self.keyframes.keyframe_sent(time.monotonic(), forced=False)
        self._publish(frame)
