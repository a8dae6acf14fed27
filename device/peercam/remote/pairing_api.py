"""Pairing on the LAN over HTTP: the admin's page makes an offer (a QR code and a
short code), the phone's /pair page answers it, and the admin lists and unpairs
devices. The protocol itself is pairing.py's; this is only its HTTP face.

Who may do what (http/access.py): /pair, its request and the camera's id are public,
since the phone that scans the code is not logged in (the request's MAC proves it
holds the code); everything else under /api/remote/ is for admins.

The QR code: http/qr_code.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from peercam.config import RemoteConfig
from peercam.http.access import principal_of
from peercam.http.qr_code import qr_svg
from peercam.remote.devices import DeviceStore, PairedDevice
from peercam.remote.pairing import Pairing
from peercam.remote.refused import Refused

logger = logging.getLogger(__name__)

# A real request is about 400 bytes; a 64-character name, all escaped, about 1200.
MAX_REQUEST_BYTES = 4096
# What a malformed request is refused with (400); anything else refused is 403.
_MALFORMED = frozenset({"garbage", "version", "bad-key", "too-large"})
_DEVICE_ID = re.compile(r"[0-9a-f]{32}")
# What the QR code's URL may name as the camera (the admin's own Host header).
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class _Link(Protocol):
    @property
    def connected(self) -> asyncio.Event: ...


class _Channel(Protocol):
    @property
    def camera_id(self) -> str: ...


class RemoteParts(Protocol):
    """What of remote access (service.py's RemoteAccess) the API uses; read at each
    request, since the parts exist only once the output has started."""

    @property
    def devices(self) -> DeviceStore: ...

    @property
    def pairing(self) -> Pairing: ...

    @property
    def channel(self) -> _Channel: ...

    @property
    def settings(self) -> RemoteConfig: ...

    @property
    def link(self) -> _Link | None: ...

    async def unpaired(self, device_id: str) -> None:
        """End what the device had open."""
        ...


def refusal(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def device_json(device: PairedDevice) -> dict[str, Any]:
    """What the admin's page shows: never the key."""
    return {
        "id": device.id,
        "name": device.name,
        "user": device.user,
        "paired_at": device.paired_at,
        "last_seen": device.last_seen,
    }


class PairingApi:
    def __init__(self, remote: RemoteParts) -> None:
        self._remote = remote
        self._page = resources.files("peercam.webroot").joinpath("pair.html").read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/pair", self.page),
            web.get("/api/remote/camera", self.camera),
            web.post("/api/remote/pair", self.pair),
            web.post("/api/remote/offers", self.offer),
            web.get("/api/remote/devices", self.list_devices),
            web.delete("/api/remote/devices/{id}", self.unpair),
        ]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._page,
            headers={
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )

    async def camera(self, request: web.Request) -> web.Response:
        """The camera's id, for a phone pairing by typed code (the QR code carries
        it). Public: the id is the hash of the camera's public key, no secret."""
        return web.json_response({"camera": self._remote.channel.camera_id})

    async def offer(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if principal is None:  # the access middleware lets no one here without one
            raise web.HTTPUnauthorized()
        host = request.headers.get("Host", "")
        if not _HOST.fullmatch(host):
            return refusal(400, "host", "the request's Host header cannot name the camera")
        offer = self._remote.pairing.offer(principal.name)
        url = f"https://{host}/pair#{offer.qr_fragment()}"
        logger.info("pairing: %s made a pairing offer", principal.name)
        return web.json_response(
            {
                "url": url,
                "code": offer.display_code(),
                "expires": offer.expires,
                "expires_in": offer.expires - offer.created,
                "qr_svg": await asyncio.to_thread(qr_svg, url),
            },
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    async def pair(self, request: web.Request) -> web.Response:
        try:
            message = await self._read_request(request)
            device, response = await asyncio.to_thread(self._remote.pairing.accept, message)
        except Refused as refused:
            logger.warning(
                "pairing: refused a request from %s: %s (%s)",
                request.remote,
                refused.reason,
                refused.code,
            )
            status = 400 if refused.code in _MALFORMED else 403
            if refused.code == "too-large":
                status = 413
            return refusal(status, refused.code, refused.reason)
        logger.info(
            "pairing: %s (%s) paired from %s, acting as %s",
            device.name,
            device.id,
            request.remote,
            device.user or "nobody",
        )
        settings = self._remote.settings
        response["rendezvous"] = {
            "url": settings.phone_broker,
            "username": settings.page_username,
            "password": settings.page_password,
            "topic_prefix": settings.topic_prefix,
        }
        return web.json_response(response, headers={"Cache-Control": "no-store"})

    async def _read_request(self, request: web.Request) -> object:
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BYTES:
            raise Refused("too-large", f"a pairing request of {length} bytes")
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            raise Refused("too-large", f"a pairing request over {MAX_REQUEST_BYTES} bytes")
        try:
            message: object = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
            raise Refused("garbage", "the pairing request is not JSON") from None
        return message

    async def list_devices(self, request: web.Request) -> web.Response:
        # In a thread: the store's lock is held while another thread writes its file.
        devices = await asyncio.to_thread(self._remote.devices.devices)
        link = self._remote.link
        return web.json_response(
            {
                "camera": self._remote.channel.camera_id,
                "devices": [device_json(device) for device in devices],
                "link": {
                    "connected": link is not None and link.connected.is_set(),
                    "broker": self._remote.settings.broker,
                },
            },
            headers={"Cache-Control": "no-store"},
        )

    async def unpair(self, request: web.Request) -> web.Response:
        device_id = request.match_info["id"]
        known = _DEVICE_ID.fullmatch(device_id) is not None and await asyncio.to_thread(
            self._remote.devices.remove, device_id
        )
        if not known:
            return refusal(404, "unknown-device", "no paired device has this id")
        principal = principal_of(request)
        logger.info(
            "pairing: %s unpaired device %s", principal.name if principal else "?", device_id
        )
        await self._remote.unpaired(device_id)
        return web.Response(status=204)
