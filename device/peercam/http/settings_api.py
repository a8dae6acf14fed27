"""The settings page's API (admins only, http/access.py): every setting as the
model describes it (settings/form.py), and changes written to peercam.toml
(settings/config_file.py), then applied by the daemon: at once where the setting
allows it, else by restarting in place after the answer has gone out
(settings/impact.py says which, and the page says so before saving).

A refused change names each bad key with the daemon's own message and writes
nothing. Every saved change is logged with who made it (secrets as "changed")."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from peercam.config import Config, ConfigError
from peercam.http.access import principal_of
from peercam.http.errors import refuse_field
from peercam.http.forms import read_json_object
from peercam.http.qr_code import qr_svg
from peercam.service.addresses import url_for_phone
from peercam.service.network_status import network_status
from peercam.settings.config_file import ConfigFile, SettingsRefused
from peercam.settings.form import (
    ENDPOINT_KEYS,
    SECRET_KEYS,
    UNCHANGED,
    redacted,
    restored,
    settings_form,
)
from peercam.settings.impact import SAYS, Impact, impact_of_all

logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
# Applies a saved config: at once, or by a restart it schedules (after the answer).
Apply = Callable[[Config, Impact], Awaitable[None]]


def _at(data: dict[str, Any], dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def _shown(dotted: str, value: Any) -> str:
    if dotted.rpartition(".")[2] in SECRET_KEYS or redacted(value) != value:
        return "(secret)"
    return repr(value)


@dataclass(frozen=True)
class RunInfo:
    """Which run of the daemon answers (a restart makes a new one), and whether it
    had to go back to the settings before the last saved ones."""

    run_id: str
    rolled_back: str | None = None


def _secrets_left_behind(changes: dict[str, Any], written: dict[str, Any]) -> dict[str, str]:
    """A section's server changed while its saved secret stays: refused, so that a
    page cannot send a secret it was never shown to a server of its choosing."""
    errors: dict[str, str] = {}
    for dotted in changes:
        section, _, key = dotted.partition(".")
        table = written.get(section)
        if key not in ENDPOINT_KEYS or not isinstance(table, dict):
            continue
        if changes[dotted] == table.get(key):
            continue
        for secret in SECRET_KEYS & table.keys():
            if changes.get(f"{section}.{secret}", UNCHANGED) == UNCHANGED:
                errors[dotted] = f"give {section}.{secret} again with it: the saved one stays"
    return errors


class SettingsApi:
    def __init__(
        self,
        file: ConfigFile,
        current: Callable[[], Config],
        apply: Apply,
        fingerprint: Callable[[], str | None] = lambda: None,
        run: RunInfo = RunInfo(""),
    ) -> None:
        """`fingerprint`: the HTTPS certificate's SHA-256, for a phone to compare."""
        self._run = run
        self._file = file
        self._current = current
        self._apply = apply
        self._fingerprint = fingerprint
        self._saving = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/settings", self.read),
            web.put("/api/settings", self.change),
            web.get("/api/settings/phone", self.phone),
            web.get("/api/settings/network", self.network),
        ]

    async def network(self, request: web.Request) -> web.Response:
        """How the camera is connected (read only: Wi-Fi is set on the SD card)."""
        interfaces = await asyncio.to_thread(network_status)
        return web.json_response([dataclasses.asdict(i) for i in interfaces])

    async def phone(self, request: web.Request) -> web.Response:
        """The camera's address as a QR code for a phone on the LAN, and the
        certificate's fingerprint to compare with what the phone's browser shows."""
        scheme = "https" if request.secure else request.scheme
        url = url_for_phone(scheme, request.url.host or "", request.url.port)
        return web.json_response(
            {
                "url": url,
                "fingerprint": self._fingerprint(),
                "qr_svg": await asyncio.to_thread(qr_svg, url),
            }
        )

    async def read(self, request: web.Request) -> web.Response:
        try:
            document = await asyncio.to_thread(self._file.read)
        except ConfigError as error:
            return refuse_field(500, str(error))
        running = self._current().model_dump(mode="json")
        overridden = {
            f"{section}.{key}": value
            for section, values in self._file.overrides.items()
            for key, value in values.items()
        }
        return web.json_response(
            {
                "form": settings_form(),
                "file": str(self._file.path),
                "written": redacted(document.unwrap()),
                "running": redacted(running),
                "overridden": redacted(overridden),
                "run": self._run.run_id,
                "rolled_back": self._run.rolled_back,
            }
        )

    async def change(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, _MAX_BODY)
        changes = body.get("changes") if body is not None else None
        if not isinstance(changes, dict) or not changes:
            return web.json_response(
                {"error": 'send {"changes": {"section.key": value, ...}} as JSON'}, status=400
            )
        async with self._saving:  # two admins saving at once: one after the other
            try:
                written = (await asyncio.to_thread(self._file.read)).unwrap()
            except ConfigError as error:
                return refuse_field(500, str(error))
            errors = _secrets_left_behind(changes, written)
            for dotted, value in list(changes.items()):
                try:
                    changes[dotted] = restored(
                        value, _at(written, dotted), dotted.rpartition(".")[2]
                    )
                except KeyError:
                    errors[dotted] = f"nothing is set to keep: give a value, not {UNCHANGED!r}"
            if errors:
                return web.json_response({"errors": errors}, status=400)
            try:
                document, config = self._file.plan(changes)
            except SettingsRefused as refused:
                return web.json_response({"errors": refused.errors}, status=400)
            except ConfigError as error:
                return refuse_field(500, str(error))
            after = document.unwrap()
            changed = [d for d in changes if _at(after, d) != _at(written, d)]
            if not changed:
                return web.json_response({"saved": [], "impact": Impact.NOTHING.value})
            try:
                await asyncio.to_thread(self._file.save, document)
            except OSError as error:  # a full or read-only card
                logger.error("cannot save the settings: %s", error)
                return refuse_field(
                    500, f"cannot write {self._file.path}: {error.strerror or error}"
                )
        principal = principal_of(request)
        who = f"{principal.name if principal else '?'} from {request.remote or '?'}"
        for dotted in changed:
            logger.warning(
                "setting %s changed by %s: %s -> %s", dotted, who,
                _shown(dotted, _at(written, dotted)), _shown(dotted, _at(after, dotted)),
            )  # fmt: skip
        impact = impact_of_all(changed)
        overridden = [
            d
            for d in changed
            if d.rpartition(".")[2] in self._file.overrides.get(d.partition(".")[0], {})
        ]
        await self._apply(config, impact)
        return web.json_response(
            {
                "saved": changed,
                "impact": impact.value,
                "says": SAYS[impact],
                # Saved, but the command line sets these over the file while it runs.
                "overridden": overridden,
            }
        )
