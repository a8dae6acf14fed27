"""Event clips from the real pipeline (test pattern, test tone, libx264, Opus): the
MP4 opens, starts at a keyframe, covers pre-roll + event + post, has audio, and holds
exactly the frames sent to viewers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import pytest

from peercam.config import build_config
from peercam.events import EventBus, Motion, Ring, to_json
from peercam.h264_bitstream import nal_units
from peercam.media import EncodedFrame
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline, build_pipeline
from peercam.recording.clip_store import ClipStore
from peercam.recording.recorder import Recorder

PREROLL, POST, KEYFRAME_INTERVAL, FPS = 2.0, 2.0, 1.0, 30


def length_prefixed_units(sample: bytes) -> list[bytes]:
    """The NAL units of an MP4 sample (4-byte big-endian lengths)."""
    units, position = [], 0
    while position < len(sample):
        length = int.from_bytes(sample[position : position + 4], "big")
        units.append(sample[position + 4 : position + 4 + length])
        position += 4 + length
    return units


def first_run(part: list[tuple[bytes, ...]], whole: list[tuple[bytes, ...]]) -> int | None:
    """Where `part` occurs in `whole` as a contiguous run, or None."""
    for i in range(len(whole) - len(part) + 1):
        if whole[i : i + len(part)] == part:
            return i
    return None


@pytest.fixture
def config_data(tmp_path: Path) -> dict[str, dict[str, object]]:
    return {
        "camera": {"source": "test", "size": "320x240", "fps": FPS},
        "video": {"codecs": ["h264"], "keyframe_interval": KEYFRAME_INTERVAL},
        "audio": {"source": "test"},
        "recording": {
            "enabled": True,
            "preroll_seconds": PREROLL,
            "post_seconds": POST,
            "max_seconds": 30,
        },
        "server": {"state_dir": str(tmp_path / "state")},
    }


def recording_setup(
    tmp_path: Path, config_data: dict[str, dict[str, object]]
) -> tuple[MediaPipeline, EventBus, ClipStore, Recorder]:
    """The real pipeline with a recorder on it, its clips in `tmp_path`."""
    config = build_config(config_data)
    pipeline = build_pipeline(config, Metrics())
    events = EventBus()
    store = ClipStore(tmp_path / "clips", 100 * 2**20, 0)
    return pipeline, events, store, Recorder(config.recording, pipeline, events, store, FPS)


async def test_an_event_clip_is_the_viewers_packets_from_a_keyframe_before_the_preroll(
    tmp_path: Path, config_data: dict[str, dict[str, object]]
) -> None:
    pipeline, events, store, recorder = recording_setup(tmp_path, config_data)
    pages = events.subscribe()
    viewer = pipeline.subscribe("h264")
    sent: list[EncodedFrame] = []

    async def watch() -> None:
        while True:
            sent.append(await viewer.get())

    watching = asyncio.create_task(watch())
    await recorder.start()
    try:
        await asyncio.sleep(PREROLL + KEYFRAME_INTERVAL + 1.0)  # a full pre-roll exists
        event_at = time.time()
        clip_id = recorder.trigger("manual")
        assert clip_id is not None
        await asyncio.sleep(1.0)
        assert recorder.trigger("ring") == clip_id  # a second trigger extends the clip
        extended_event = time.time()
        announced = None
        while announced is None:
            event = to_json(await asyncio.wait_for(pages.get(), POST + 15))
            if event["type"] == "clip":
                announced = event
        assert announced["id"] == clip_id and announced["trigger"] == "manual"
    finally:
        await recorder.stop()
        watching.cancel()
        viewer.close()
        await pipeline.stop()

    [record] = store.records()
    assert record.id == clip_id and record.triggers == ["manual", "ring"]
    assert record.has_audio and (record.width, record.height) == (320, 240)
    # Starts at a keyframe no later than the pre-roll asks, at most one keyframe
    # interval (plus a frame) earlier.
    lead = event_at - record.started_at
    assert PREROLL - 0.05 <= lead <= PREROLL + KEYFRAME_INTERVAL + 0.1, lead
    # Ends POST seconds after the last trigger.
    expected = extended_event + POST - record.started_at
    assert abs(record.duration - expected) < 0.25, (record.duration, expected)
    saved = json.loads((tmp_path / "clips" / f"{clip_id}.json").read_text())
    assert saved["id"] == clip_id

    with av.open(str(store.video_path(clip_id))) as container:
        video_stream = container.streams.video[0]
        audio_stream = container.streams.audio[0]
        assert video_stream.codec_context.name == "h264"
        assert audio_stream.codec_context.name == "opus"
        assert float(container.duration or 0) / av.time_base == pytest.approx(
            record.duration, abs=0.15
        )
        video_packets = [p for p in container.demux(video_stream) if p.size]
    with av.open(str(store.video_path(clip_id))) as container:
        audio_packets = [p for p in container.demux(container.streams.audio[0]) if p.size]
    assert video_packets[0].is_keyframe
    assert len(audio_packets) == pytest.approx(record.duration / 0.02, rel=0.1)
    # No re-encode: the clip's samples are the viewer's frames, unit for unit...
    in_clip = [tuple(length_prefixed_units(bytes(p))) for p in video_packets]
    to_viewer = [tuple(nal_units(f.data)) for f in sent]
    start = first_run(in_clip, to_viewer)
    assert start is not None
    # ...and none is missing: every frame the viewer got between the clip's first and
    # last picture is in it. (How many frames a second the encoder made depends on
    # the machine's load; `make bench` measures that, not this test.)
    span = sent[start : start + len(in_clip)]
    first, last = span[0].captured_at, span[-1].captured_at
    assert [f for f in sent if first <= f.captured_at <= last] == span
    assert len(video_packets) <= record.duration * FPS + 3  # never more than the camera made
    # Every frame decodes.
    with av.open(str(store.video_path(clip_id))) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == len(video_packets)
    # The event's picture is a JPEG.
    assert store.thumbnail_path(clip_id).read_bytes()[:2] == b"\xff\xd8"


async def test_a_clip_in_progress_is_written_when_the_daemon_stops(
    tmp_path: Path, config_data: dict[str, dict[str, object]]
) -> None:
    pipeline, _, store, recorder = recording_setup(tmp_path, config_data)
    await recorder.start()
    try:
        await asyncio.sleep(KEYFRAME_INTERVAL + 0.5)
        assert recorder.trigger("manual") is not None
        await asyncio.sleep(0.5)
    finally:
        await recorder.stop()
        await pipeline.stop()
    [record] = store.records()
    assert 0.5 < record.duration < POST + PREROLL + KEYFRAME_INTERVAL


async def test_nothing_to_record_before_the_first_keyframe(
    tmp_path: Path, config_data: dict[str, dict[str, object]]
) -> None:
    pipeline, _, store, recorder = recording_setup(tmp_path, config_data)
    assert recorder.trigger("manual") is None  # not started: nothing buffered
    await pipeline.stop()
    assert store.records() == []


async def test_a_ring_or_pir_motion_on_the_event_bus_starts_a_clip(
    tmp_path: Path, config_data: dict[str, dict[str, object]]
) -> None:
    config_data["recording"]["triggers"] = ["ring"]  # motion is not wanted here
    pipeline, events, store, recorder = recording_setup(tmp_path, config_data)
    pages = events.subscribe()
    await recorder.start()
    try:
        await asyncio.sleep(KEYFRAME_INTERVAL + 0.5)
        events.publish(Motion(time.time(), "sensor"))  # a PIR, not a trigger here
        await asyncio.sleep(0.2)
        assert recorder.active is None
        events.publish(Ring("button", time.time(), "ringing"))
        await asyncio.sleep(0.2)
        assert recorder.active is not None and recorder.active.trigger == "ring"
        while to_json(await asyncio.wait_for(pages.get(), POST + 15))["type"] != "clip":
            pass
    finally:
        await recorder.stop()
        await pipeline.stop()
    assert [r.trigger for r in store.records()] == ["ring"]
