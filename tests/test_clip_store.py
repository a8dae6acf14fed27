"""The clip store: listed only when complete, oldest deleted first, nothing torn."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from peercam.recording.clip_store import ClipRecord, ClipStore, new_clip_id


def record(clip_id: str, event_at: float, size: int) -> ClipRecord:
    return ClipRecord(
        id=clip_id, trigger="manual", triggers=["manual"], event_at=event_at,
        started_at=event_at - 5, duration=15.0, size=size, width=320, height=240,
        has_audio=True,
    )  # fmt: skip


def add(store: ClipStore, event_at: float, size: int = 1000) -> str:
    clip_id = new_clip_id("manual", event_at)

    def write(path: Path) -> ClipRecord:
        path.write_bytes(b"\0" * size)
        return record(clip_id, event_at, size)

    store.add(clip_id, write, b"\xff\xd8 picture")
    return clip_id


def test_clips_are_listed_newest_first_with_their_files(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, 10**9, 0)
    first = add(store, 1_000_000)
    second = add(store, 1_000_060)
    assert [r.id for r in store.records()] == [second, first]
    assert store.video_path(first).stat().st_size == 1000
    assert store.thumbnail_path(first).exists()
    assert store.get(first) == record(first, 1_000_000, 1000)
    assert store.get("../../etc/passwd") is None
    assert store.delete(first) and not store.delete(first)
    assert [r.id for r in store.records()] == [second]
    assert not store.video_path(first).exists() and not store.thumbnail_path(first).exists()


def test_over_the_quota_the_oldest_clips_go_first(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, quota_bytes=4000, min_free_bytes=0)
    ids = [add(store, 1_000_000 + 60 * i) for i in range(6)]
    kept = [r.id for r in store.records()]
    # Each clip is ~1000 bytes of video plus its picture and record.
    assert kept == ids[::-1][: len(kept)] and 2 <= len(kept) <= 3, kept
    assert store.used_bytes() <= 4000
    assert ids[-1] in kept


def test_below_the_free_space_floor_older_clips_go_but_never_the_new_one(
    tmp_path: Path,
) -> None:
    store = ClipStore(tmp_path, quota_bytes=10**12, min_free_bytes=0)
    old = [add(store, 1_000_000 + 60 * i) for i in range(3)]
    # A floor above what the disk has free: everything older must make room.
    store.min_free = shutil.disk_usage(tmp_path).free + 10**9
    newest = add(store, 2_000_000)
    assert [r.id for r in store.records()] == [newest]
    assert all(not store.video_path(i).exists() for i in old)


def test_a_write_that_fails_midway_leaves_no_clip_and_no_files(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, 10**9, 0)
    keep = add(store, 1_000_000)
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(path: Path) -> ClipRecord:
        path.write_bytes(b"\0" * 500)  # half a file, then the muxer fails
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.add(new_clip_id("ring", time.time()), broken, None)
    assert [r.id for r in store.records()] == [keep]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_what_a_power_cut_leaves_is_cleared_and_never_listed(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, 10**9, 0)
    keep = add(store, 1_000_000)
    # A cut during the video's write, and one after the rename but before the record.
    (tmp_path / ".partial-20990101T000000-ring-abcdef.mp4").write_bytes(b"\0" * 300)
    orphan = store.video_path("20990101T000001-ring-abcdef")
    orphan.write_bytes(b"\0" * 300)
    assert [r.id for r in ClipStore(tmp_path, 10**9, 0).records()] == [keep]
    assert not orphan.exists()
    assert not list(tmp_path.glob(".partial-*"))
