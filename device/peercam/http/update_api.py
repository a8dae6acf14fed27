"""Updates from the settings page (admins only, http/access.py): upload a bundle, see
what the last update did.

The upload is checked here (signature, board, every wheel) so that a wrong file is
refused with its reason at once; the daemon then leaves it for the root updater
(update/incoming.py) which checks it again itself and restarts the daemon into the
new release. The page keeps asking GET /api/update across that restart."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from peercam import __version__
from peercam.config import Config
from peercam.http.access import principal_of
from peercam.http.errors import refuse_field
from peercam.service.state_dir import state_directory
from peercam.update.bundle import (
    MAX_BUNDLE_BYTES,
    BundleRefused,
    VerifiedBundle,
    load_trusted_keys,
    verify_bundle,
)
from peercam.update.incoming import INCOMING_NAME, incoming_directory
from peercam.update.paths import releases_dir, trusted_keys_dir
from peercam.update.releases import ReleaseStore
from peercam.update.status import read_status

logger = logging.getLogger(__name__)


class UpdateApi:
    def __init__(self, config: Config) -> None:
        self._keys_dir = trusted_keys_dir()
        self._store = ReleaseStore(releases_dir())
        self._incoming = incoming_directory(state_directory(config.server.state_dir))
        self._receiving = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/update", self.state), web.post("/api/update", self.upload)]

    async def state(self, request: web.Request) -> web.Response:
        def read() -> dict[str, object]:
            last = read_status(self._store.root)
            return {
                "running": __version__,
                "release": self._store.current().name,
                "waiting": (self._incoming / INCOMING_NAME).exists(),
                "last": None if last is None else last.to_json(),
            }

        return web.json_response(await asyncio.to_thread(read))

    async def upload(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BUNDLE_BYTES:
            return refuse_field(413, f"an update is at most {MAX_BUNDLE_BYTES >> 20} MiB")
        if self._receiving.locked() or (self._incoming / INCOMING_NAME).exists():
            return refuse_field(409, "an update is already being installed")
        async with self._receiving:
            partial = self._incoming / ".upload.partial"
            try:
                await asyncio.to_thread(self._incoming.mkdir, mode=0o700, exist_ok=True)
                size = await self._receive(request, partial)
                if size is None:
                    return refuse_field(413, f"an update is at most {MAX_BUNDLE_BYTES >> 20} MiB")
                if size == 0:
                    return refuse_field(400, "no file was sent")
                bundle = await asyncio.to_thread(self._verify, partial)
            except BundleRefused as error:
                return refuse_field(422, str(error))
            except OSError as error:
                logger.error("cannot keep an uploaded update: %s", error)
                return refuse_field(507, f"the camera cannot store the update: {error.strerror}")
            finally:
                if partial.exists():
                    await asyncio.to_thread(partial.unlink, True)
        principal = principal_of(request)
        logger.info(
            "%s uploaded update %s; the updater installs it next",
            principal.name if principal else "?",
            bundle.manifest.version,
        )
        return web.json_response(
            {"version": bundle.manifest.version, "state": "waiting"}, status=202
        )

    async def _receive(self, request: web.Request, target: Path) -> int | None:
        """The body into `target`; None when it grows past the limit."""
        size = 0
        fd = await asyncio.to_thread(
            os.open, target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(fd, "wb") as file:
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    return None
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(os.fsync, file.fileno())
        return size

    def _verify(self, partial: Path) -> VerifiedBundle:
        bundle = verify_bundle(partial, load_trusted_keys(self._keys_dir))
        # Renamed only once proven: the updater is started by its appearing.
        os.replace(partial, self._incoming / INCOMING_NAME)
        return bundle
