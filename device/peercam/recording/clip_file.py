"""An MP4 clip from shared encoded frames: muxed with PyAV, never decoded or re-encoded.

H.264 arrives as Annex-B access units with SPS/PPS in front of each IDR; the MP4
muxer converts them to length-prefixed samples given Annex-B parameter sets as the
stream's extradata. Opus needs its identification header (RFC 7845) as extradata.
Timestamps come from the capture clock, so audio and video stay in sync in the file
as they were on the wire.
"""

from __future__ import annotations

import fractions
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from peercam.h264_bitstream import PPS, SPS, START_CODE, nal_type, nal_units
from peercam.media import EncodedFrame

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
OPUS_RATE = 48_000
OPUS_FRAME_SAMPLES = 960  # 20 ms, what peercam's Opus encoder cuts


class ClipError(Exception):
    pass


@dataclass(frozen=True)
class ClipSummary:
    duration: float  # seconds, first to last video frame plus one frame
    video_frames: int
    audio_frames: int
    first_captured_at: float  # monotonic capture time of the first video frame


def opus_head(channels: int = 1, pre_skip: int = 0) -> bytes:
    """RFC 7845 section 5.1: version 1, mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, OPUS_RATE, 0, 0)


def parameter_sets(keyframe: bytes) -> bytes:
    units = [u for u in nal_units(keyframe) if nal_type(u) in (SPS, PPS)]
    if not any(nal_type(u) == SPS for u in units) or not any(nal_type(u) == PPS for u in units):
        raise ClipError("the first keyframe carries no SPS/PPS")
    return b"".join(START_CODE + unit for unit in units)


def write_mp4(
    path: Path,
    video: Sequence[EncodedFrame],
    audio: Sequence[EncodedFrame],
    width: int,
    height: int,
    fps: int,
) -> ClipSummary:
    """Write `video` (H.264) and `audio` (Opus) to `path`; blocking, for a thread."""
    first = next((i for i, f in enumerate(video) if f.keyframe), None)
    if first is None:
        raise ClipError("no keyframe to start the clip at")
    video = video[first:]
    start = video[0].captured_at
    audio = [f for f in audio if f.captured_at >= start]
    # faststart: the index goes in front, so a browser plays the clip before it has
    # all of it.
    options = {"movflags": "+faststart"}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        video_stream = container.add_stream("h264", rate=fps)
        video_stream.width, video_stream.height = width, height
        video_stream.time_base = VIDEO_TIME_BASE
        video_stream.codec_context.extradata = parameter_sets(video[0].data)
        packets: list[tuple[float, Any]] = []  # (seconds, av.Packet)
        last_pts = -1
        for frame in video:
            pts = max(round((frame.captured_at - start) / VIDEO_TIME_BASE), last_pts + 1)
            last_pts = pts
            packet = av.Packet(frame.data)
            packet.stream = video_stream
            packet.pts = packet.dts = pts
            packet.time_base = VIDEO_TIME_BASE
            packet.is_keyframe = frame.keyframe
            packets.append((float(pts * VIDEO_TIME_BASE), packet))
        if audio:
            audio_stream = container.add_stream("opus", rate=OPUS_RATE)
            audio_stream.codec_context.extradata = opus_head()
            audio_stream.time_base = fractions.Fraction(1, OPUS_RATE)
            # Opus frames are contiguous: the first one's capture time places the run.
            origin = round((audio[0].captured_at - start) * OPUS_RATE)
            for index, frame in enumerate(audio):
                packet = av.Packet(frame.data)
                packet.stream = audio_stream
                packet.pts = packet.dts = origin + index * OPUS_FRAME_SAMPLES
                packet.time_base = audio_stream.time_base
                packet.duration = OPUS_FRAME_SAMPLES
                packets.append((packet.pts / OPUS_RATE, packet))
        # In time order, as a player reads them (the muxer would otherwise hold
        # every video packet until the audio caught up).
        for _, packet in sorted(packets, key=lambda item: item[0]):
            container.mux(packet)
    frame_time = 1 / fps
    return ClipSummary(
        duration=video[-1].captured_at - start + frame_time,
        video_frames=len(video),
        audio_frames=len(audio),
        first_captured_at=start,
    )


def durable_replace(source: Path, target: Path) -> None:
    """Rename `source` over `target` once its bytes are on disk, then make the rename
    itself durable: a power cut leaves the old state or the new, never a torn file."""
    with source.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
