"""Event clips and pictures over HTTP.

GET    /api/events                   clips (newest first), storage, what records
POST   /api/events                   record a clip now (admin; trigger "manual")
GET    /api/clips/<id>               the MP4, with Range (seeking in the page)
GET    /api/clips/<id>/picture.jpg   the picture taken at the event
DELETE /api/clips/<id>               delete it (admin)
GET    /snapshot.jpg                 the camera's current picture
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from peercam.pipeline import MediaPipeline
from peercam.recording.clip_listing import clip_listing
from peercam.recording.clip_store import ClipStore, is_clip_id
from peercam.recording.live_snapshot import NoPicture, current_jpeg
from peercam.recording.recorder import Recorder

logger = logging.getLogger(__name__)


class ClipsApi:
    def __init__(self, pipeline: MediaPipeline, recorder: Recorder | None, motion: bool) -> None:
        """Clips come from `recorder`, None when recording is off."""
        self._pipeline = pipeline
        self._recorder = recorder
        self._store: ClipStore | None = self._recorder.store if self._recorder else None
        self._motion = motion

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/events", self.list_events),
            web.post("/api/events", self.record_now),
            web.get("/api/clips/{id}", self.clip),
            web.get("/api/clips/{id}/picture.jpg", self.picture),
            web.delete("/api/clips/{id}", self.delete),
            web.get("/snapshot.jpg", self.snapshot),
        ]

    def _need_store(self) -> ClipStore:
        if self._store is None:
            raise web.HTTPNotFound(text="recording is off (recording.enabled in peercam.toml)")
        return self._store

    def _clip_id(self, request: web.Request) -> str:
        clip_id = request.match_info["id"]
        if not is_clip_id(clip_id):
            raise web.HTTPNotFound(text=f"no clip {clip_id[:64]!r}")
        return clip_id

    async def list_events(self, request: web.Request) -> web.Response:
        listing = await asyncio.to_thread(clip_listing, self._recorder, self._motion)
        return web.json_response(listing)

    async def record_now(self, request: web.Request) -> web.Response:
        if self._recorder is None or not self._recorder.available:
            raise web.HTTPConflict(text="recording is off (recording.enabled in peercam.toml)")
        if "manual" not in self._recorder.config.triggers:
            raise web.HTTPConflict(text="manual recording is not among recording.triggers")
        if not self._recorder.switched_on:
            raise web.HTTPConflict(text="recording is switched off (Home Assistant's switch)")
        clip_id = self._recorder.trigger("manual")
        if clip_id is None:
            raise web.HTTPServiceUnavailable(text="no picture yet to record; try again shortly")
        return web.json_response({"id": clip_id}, status=202)

    async def clip(self, request: web.Request) -> web.FileResponse:
        store = self._need_store()
        clip_id = self._clip_id(request)
        if store.get(clip_id) is None:
            raise web.HTTPNotFound(text=f"no clip {clip_id!r}")
        headers = {"Content-Type": "video/mp4", "Cache-Control": "private, max-age=3600"}
        if "download" in request.query:
            headers["Content-Disposition"] = f'attachment; filename="peercam-{clip_id}.mp4"'
        return web.FileResponse(store.video_path(clip_id), headers=headers)

    async def picture(self, request: web.Request) -> web.FileResponse:
        store = self._need_store()
        clip_id = self._clip_id(request)
        path = store.thumbnail_path(clip_id)
        if store.get(clip_id) is None or not path.exists():
            raise web.HTTPNotFound(text=f"no picture for clip {clip_id!r}")
        return web.FileResponse(
            path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=3600"}
        )

    async def delete(self, request: web.Request) -> web.Response:
        store = self._need_store()
        clip_id = self._clip_id(request)
        if not store.delete(clip_id):
            raise web.HTTPNotFound(text=f"no clip {clip_id!r}")
        return web.Response(status=204)

    async def snapshot(self, request: web.Request) -> web.Response:
        try:
            picture = await current_jpeg(self._pipeline, self._recorder)
        except NoPicture as error:
            raise web.HTTPServiceUnavailable(text=f"no picture: {error}") from None
        return web.Response(
            body=picture, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )
