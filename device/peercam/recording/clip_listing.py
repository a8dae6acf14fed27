"""The clip list as pages get it (GET /api/events, the data channel's "clips")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from peercam.recording.recorder import Recorder


def clip_listing(recorder: Recorder | None, motion_detection: bool) -> dict[str, Any]:
    """Reads the store's records from disk: call it in a worker thread."""
    store = recorder.store if recorder is not None else None
    body: dict[str, Any] = {
        "recording": recorder is not None and recorder.available,
        "motion_detection": motion_detection,
        "clips": [],
        "storage": None,
    }
    if store is not None:
        body["clips"] = [
            {
                **asdict(record),
                "video": f"/api/clips/{record.id}",
                "picture": f"/api/clips/{record.id}/picture.jpg"
                if store.thumbnail_path(record.id).exists()
                else None,
            }
            for record in store.records()
        ]
        body["storage"] = asdict(store.usage())
    return body
