"""Audio and video go to a viewer as two media streams, so the browser never holds
video back for lip sync.

A browser synchronises the tracks that share a media stream id (the first field of
`a=msid` in the SDP: the sync group). aiortc puts every track of a peer connection in
one stream, so Chromium delayed each video frame until the audio of the same moment
came out of its jitter buffer. Measured at 640x480@30 H.264 on the daemon's own page:
capture → shown 56-66 ms p50 with audio on against 15-27 ms with it off, same run.
In separate streams each plays as soon as it can: video as fast as with audio off,
audio at its own delay (kept small by timestamps that count samples,
encode/sample_clock.py), so the sound trails the picture by the difference;
bench/audio_latency.py measures it. For a door camera the picture of who is there
matters more than lip sync.
"""

from __future__ import annotations

from aiortc import RTCRtpSender

from peercam.media import Kind

# One stream per kind; the ids only need to differ within one peer connection.
STREAM_IDS: dict[Kind, str] = {"video": "peercam-video", "audio": "peercam-audio"}


def own_stream(sender: RTCRtpSender, kind: Kind) -> None:
    """Put `sender`'s track in a media stream of its own kind (before the answer is
    made: the answer's `a=msid` is written from it). tests/test_rtc_hooks.py checks the
    attribute still exists."""
    if not hasattr(sender, "_stream_id"):
        raise RuntimeError("this aiortc version lacks the sender hook peercam relies on")
    setattr(sender, "_stream_id", STREAM_IDS[kind])  # noqa: B010
