"""A viewer's track: hands aiortc the shared encoded frames, already packetized."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.base import Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from peercam.fanout.hub import FrameFeed, SubscriptionClosed
from peercam.media import EncodedFrame, Kind


class SharedFrameTrack(MediaStreamTrack):
    """Yields the hub's `EncodedFrame`s. Paced by the encoder: each frame is returned
    as soon as it exists, which is when it should go out."""

    def __init__(self, kind: Kind, subscription: FrameFeed) -> None:
        super().__init__()
        self.kind = kind
        self.subscription = subscription

    # aiortc types recv() as returning frames or av.Packets; its sender hands anything
    # else to the encoder's pack(), which is what PrepackedPayloads expects.
    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            return await self.subscription.get()
        except SubscriptionClosed:
            self.stop()
            raise MediaStreamError from None

    def stop(self) -> None:
        super().stop()
        self.subscription.close()


class PrepackedPayloads(Encoder):
    """Stands where aiortc puts a per-viewer encoder: returns the payloads the shared
    encoder already built, so a viewer costs no encoding and no packetizing."""

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("peercam senders never encode; they carry shared frames")

    def pack(self, packet: EncodedFrame) -> tuple[list[bytes], int]:  # type: ignore[override]
        return list(packet.payloads), packet.rtp_timestamp


def release_audio_promptly(receiver: RTCRtpReceiver) -> None:
    """Let `receiver` hand on each audio frame as soon as it is complete.

    aiortc 1.16 holds received audio until four newer frames have arrived (80 ms).
    Talkback smooths jitter once, in the speaker's own buffer (audio/alsa_speaker.py),
    so that wait would only add delay. Checked by tests/test_rtc_hooks.py.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, name):
        raise RuntimeError("this aiortc version lacks the receiver hook peercam relies on")
    setattr(receiver, name, JitterBuffer(capacity=16, prefetch=1))


def attach_to_sender(sender: RTCRtpSender, on_keyframe_request: Callable[[], None]) -> None:
    """Make `sender` carry shared frames and forward PLI/FIR to the shared encoder.

    aiortc 1.16 creates a per-sender encoder on the first frame unless one is set, and
    on PLI/FIR only sets a flag its packet path never reads; both are redirected here.
    tests/test_rtc_hooks.py checks these attributes still exist, so an aiortc upgrade
    that moves them fails the tests instead of silently re-encoding or losing requests.
    """
    if not hasattr(sender, "_RTCRtpSender__encoder") or not hasattr(sender, "_send_keyframe"):
        raise RuntimeError("this aiortc version lacks the sender hooks peercam relies on")
    setattr(sender, "_RTCRtpSender__encoder", PrepackedPayloads())  # noqa: B010
    setattr(sender, "_send_keyframe", on_keyframe_request)  # noqa: B010
