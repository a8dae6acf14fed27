"""Clips on disk: one MP4, one JPEG and one JSON record per event, oldest deleted first.

The record is written last, each file through a temporary name and a durable rename:
a clip is listed only once all of it is on disk, so a power cut mid-write leaves
nothing listed. Files without a record are removed when the store opens.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from peercam.recording.clip_file import durable_replace

logger = logging.getLogger(__name__)

# The trigger's name is bounded so that an id from a request can never be too long for
# a file name (a 250-letter one made open() fail with ENAMETOOLONG: a 500).
_KIND_LETTERS = 16
CLIP_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[a-z]{1,16}-[0-9a-f]{6}")
MAX_ID_LENGTH = len("20260101T000000--abcdef") + _KIND_LETTERS


def is_clip_id(text: str) -> bool:
    """Checked before any path is made from it: fullmatch, as `$` would also allow a
    final newline."""
    return len(text) <= MAX_ID_LENGTH and CLIP_ID.fullmatch(text) is not None


TEMPORARY_PREFIX = ".partial-"


@dataclass(frozen=True)
class ClipRecord:
    id: str
    trigger: str  # what started it: ring, motion, manual
    triggers: list[str]  # everything that extended it, in order
    event_at: float  # wall clock (Unix time) of the first trigger
    started_at: float  # wall clock of the clip's first frame (pre-roll included)
    duration: float  # seconds
    size: int  # bytes of the MP4
    width: int
    height: int
    has_audio: bool


@dataclass(frozen=True)
class Usage:
    used: int  # bytes in clips
    quota: int
    free: int  # bytes free on the file system
    min_free: int


def new_clip_id(trigger: str, wall_time: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall_time))
    kind = re.sub(r"[^a-z]", "", trigger.lower())[:_KIND_LETTERS] or "event"
    return f"{stamp}-{kind}-{secrets.token_hex(3)}"


class ClipStore:
    def __init__(self, directory: Path, quota_bytes: int, min_free_bytes: int) -> None:
        self.directory = directory
        self.quota = quota_bytes
        self.min_free = min_free_bytes
        # What the camera saw is for its users only, whatever the umask (outside
        # systemd it is often 022: clips were 0644 in a 0755 directory). Made so, not
        # created so: mkdir's mode is filtered by the umask, and older clips are kept.
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        self._remove_unfinished()

    def _remove_unfinished(self) -> None:
        for path in self.directory.iterdir():
            if path.name.startswith(TEMPORARY_PREFIX) or (
                path.suffix in (".mp4", ".jpg") and not path.with_suffix(".json").exists()
            ):
                logger.warning("removing %s, left by an interrupted clip write", path.name)
                path.unlink(missing_ok=True)
            elif path.is_file():
                path.chmod(0o600)

    def video_path(self, clip_id: str) -> Path:
        return self.directory / f"{clip_id}.mp4"

    def thumbnail_path(self, clip_id: str) -> Path:
        return self.directory / f"{clip_id}.jpg"

    def _record_path(self, clip_id: str) -> Path:
        return self.directory / f"{clip_id}.json"

    def temporary(self, clip_id: str, suffix: str) -> Path:
        return self.directory / f"{TEMPORARY_PREFIX}{clip_id}{suffix}"

    def add(
        self,
        clip_id: str,
        write_video: Callable[[Path], ClipRecord],
        thumbnail: bytes | None,
    ) -> ClipRecord:
        """Write a clip: `write_video` fills the path it is given and returns the
        record; then the thumbnail, then the record. Blocking, for a thread."""
        self._make_room(keep=None)
        video = self.temporary(clip_id, ".mp4")
        try:
            record = write_video(video)
            _publish(video, self.video_path(clip_id))
            if thumbnail is not None:
                picture = self.temporary(clip_id, ".jpg")
                picture.write_bytes(thumbnail)
                _publish(picture, self.thumbnail_path(clip_id))
            text = self.temporary(clip_id, ".json")
            text.write_text(json.dumps(asdict(record), indent=1))
            _publish(text, self._record_path(clip_id))
        except BaseException:
            for leftover in (
                video,
                self.temporary(clip_id, ".jpg"),
                self.temporary(clip_id, ".json"),
            ):
                leftover.unlink(missing_ok=True)
            if not self._record_path(clip_id).exists():
                self.video_path(clip_id).unlink(missing_ok=True)
                self.thumbnail_path(clip_id).unlink(missing_ok=True)
            raise
        self._make_room(keep=clip_id)
        return record

    def records(self) -> list[ClipRecord]:
        """Every complete clip, newest first."""
        found = [self._read(path.stem) for path in self.directory.glob("*.json")]
        return sorted(
            (r for r in found if r is not None), key=lambda r: (r.event_at, r.id), reverse=True
        )

    def get(self, clip_id: str) -> ClipRecord | None:
        return self._read(clip_id)

    def _read(self, clip_id: str) -> ClipRecord | None:
        if not is_clip_id(clip_id) or not self.video_path(clip_id).exists():
            return None
        path = self._record_path(clip_id)
        try:
            return ClipRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            logger.warning("ignoring unreadable clip record %s: %s", path.name, error)
            return None

    def delete(self, clip_id: str) -> bool:
        if not is_clip_id(clip_id) or not self._record_path(clip_id).exists():
            return False
        # The record first: from then on the clip is no longer listed.
        self._record_path(clip_id).unlink(missing_ok=True)
        self.video_path(clip_id).unlink(missing_ok=True)
        self.thumbnail_path(clip_id).unlink(missing_ok=True)
        logger.info("clip %s deleted", clip_id)
        return True

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def usage(self) -> Usage:
        free = shutil.disk_usage(self.directory).free
        return Usage(self.used_bytes(), self.quota, free, self.min_free)

    def _make_room(self, keep: str | None) -> None:
        """Delete the oldest clips while over the quota or under the free-space floor;
        never the clip `keep` just written."""
        for record in reversed(self.records()):
            usage = self.usage()
            if usage.used <= self.quota and usage.free >= self.min_free:
                return
            if record.id == keep:
                continue
            logger.info("clip %s deleted to stay within the quota/free space", record.id)
            self.delete(record.id)


def _publish(written: Path, final: Path) -> None:
    # The muxer and write_bytes create files as the umask allows; in the 0700
    # directory nobody else could open them before this.
    written.chmod(0o600)
    durable_replace(written, final)
