"""Audio RTP timestamps count samples, whatever the capture thread's jitter."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import av
import numpy as np

from peercam.encode.audio import OpusAudioEncoder
from peercam.encode.codecs import OPUS
from peercam.encode.sample_clock import REANCHOR_SECONDS, WINDOW_FRAMES, SampleClock
from peercam.encode.shared_encoder import SharedEncoder
from peercam.media import MEDIA_EPOCH, CapturedAudio, EncodedFrame, rtp_timestamp
from peercam.metrics import Metrics

# Seconds each 20 ms frame is handed over late, as a busy machine does: most frames
# on time or nearly, some tens of ms late (the reads after a late one return at once).
LATE = [0.0, 0.004, 0.040, 0.021, 0.001, 0.0, 0.030, 0.011, 0.0005, 0.008]


def test_jittery_capture_times_give_timestamps_exactly_a_frame_apart() -> None:
    clock = SampleClock(48_000)
    stamps = [clock.stamp(100.0 + 0.02 * i + LATE[i % 10], 960) for i in range(60)]
    assert {b - a for a, b in pairwise(stamps)} == {960}
    assert stamps[0] == rtp_timestamp(100.0, 48_000)


def test_lost_samples_leave_a_gap_once_every_frame_since_is_late() -> None:
    clock = SampleClock(48_000)
    # One 20 ms block lost after frame 30 (a sound card's overrun): every later frame
    # is captured a frame later than the count says, on top of the jitter.
    captured = [100.0 + 0.02 * (i + (i > 30)) + LATE[i % 10] for i in range(80)]
    steps = [b - a for a, b in pairwise(clock.stamp(t, 960) for t in captured)]
    assert sorted(steps) == [960] * (len(steps) - 1) + [1920]
    # Found within the window, not waited out by the listener.
    assert steps.index(1920) <= 30 + WINDOW_FRAMES


def test_a_real_jump_in_capture_time_reanchors_the_count() -> None:
    clock = SampleClock(48_000)
    first = clock.stamp(10.0, 960)
    assert clock.stamp(10.02, 960) == first + 960
    # The source restarted half a second later: the stream jumps with it.
    later = 10.04 + REANCHOR_SECONDS + 0.4
    assert clock.stamp(later, 960) == rtp_timestamp(later, 48_000)


def test_the_count_wraps_at_32_bits() -> None:
    clock = SampleClock(48_000)
    # Two frames before the 32-bit timestamp wraps (half a sample in, against rounding).
    near_wrap = MEDIA_EPOCH + ((1 << 32) - 2 * 960 + 0.5) / 48_000
    stamps = [clock.stamp(near_wrap + 0.02 * i, 960) for i in range(4)]
    assert stamps == [(1 << 32) - 1920, (1 << 32) - 960, 0, 960]


async def test_the_shared_opus_encoder_stamps_its_frames_by_samples() -> None:
    published: list[EncodedFrame] = []
    encoder = SharedEncoder(OPUS, lambda: OpusAudioEncoder(32_000), published.append, Metrics())
    encoder.start()
    for i, late in enumerate([0.0, 0.007, 0.0, 0.015, 0.001, 0.0, 0.003, 0.0]):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 48_000
        encoder.feed(CapturedAudio(frame, 50.0 + 0.02 * i + late))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    await encoder.stop()
    stamps = [f.rtp_timestamp for f in published]
    assert len(stamps) >= 6
    assert {b - a for a, b in pairwise(stamps)} == {960}
