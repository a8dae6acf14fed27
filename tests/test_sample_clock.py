"""Audio RTP timestamps count samples, whatever the capture thread's jitter."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import av
import numpy as np

from peercam.encode.audio import OpusAudioEncoder, TelephonyAudioEncoder
from peercam.encode.codecs import G722, OPUS
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


async def test_g722_is_encoded_at_16_khz_and_stamped_on_its_8_khz_clock() -> None:
    """RFC 3551 §4.5.2: G.722's RTP clock counts 8000 a second though it carries 16 kHz
    audio; a 20 ms frame is 160 ticks, and the audio decodes back at 16 kHz."""
    published: list[EncodedFrame] = []
    encoder = SharedEncoder(
        G722, lambda: TelephonyAudioEncoder("g722"), published.append, Metrics()
    )
    encoder.start()
    t = np.arange(48_000) / 48_000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    for i in range(50):  # 1 s of a 1 kHz tone in 20 ms pieces at 48 kHz
        frame = av.AudioFrame.from_ndarray(
            tone[None, i * 960 : (i + 1) * 960], format="s16", layout="mono"
        )
        frame.sample_rate = 48_000
        encoder.feed(CapturedAudio(frame, 50.0 + 0.02 * i))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)
    await encoder.stop()
    assert len(published) >= 45
    assert {b.rtp_timestamp - a.rtp_timestamp for a, b in pairwise(published)} == {160}
    assert {len(f.data) for f in published} == {160}  # 64 kbit/s: 160 bytes per 20 ms
    decoder = av.CodecContext.create("g722", "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate, decoder.layout = 16_000, "mono"
    decoded = [f for p in published for f in decoder.decode(av.Packet(p.data))]
    assert decoded[0].sample_rate == 16_000
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in decoded])[4000:]
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    assert abs(np.fft.rfftfreq(len(samples), 1 / 16_000)[int(np.argmax(spectrum))] - 1000) < 10
