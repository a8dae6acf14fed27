"""Users and tokens from the settings page (admins only, http/access.py): what
`peercam passwd` and `peercam token` do on the command line, over the same store.

A token's secret is shown once, in the answer that made it: only its hash is kept.
The last admin cannot be removed or made a viewer (nobody could administer the
camera any more). Every change is logged with who made it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from peercam.auth.authenticator import Authenticator
from peercam.auth.passwords import WeakPassword, check_strength
from peercam.auth.store import CredentialError, CredentialStore
from peercam.http.access import principal_of
from peercam.http.errors import refuse_field
from peercam.http.forms import read_json_object

logger = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_BODY = 4096


def _written(change: Callable[..., T], *args: Any) -> T:
    """`change` (which saves the store), a full or read-only card said plainly."""
    try:
        return change(*args)
    except OSError as error:
        logger.error("cannot save the credentials: %s", error)
        raise web.HTTPInternalServerError(
            text=f"cannot save the credentials: {error.strerror or error}"
        ) from None


class AccountsApi:
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/users", self.users),
            web.post("/api/users", self.add_user),
            web.patch("/api/users/{name}", self.change_user),
            web.delete("/api/users/{name}", self.remove_user),
            web.get("/api/tokens", self.tokens),
            web.post("/api/tokens", self.create_token),
            web.delete("/api/tokens/{id}", self.revoke_token),
        ]

    @property
    def _store(self) -> CredentialStore:
        self._auth.refresh()
        return self._auth.store

    @staticmethod
    def _who(request: web.Request) -> str:
        principal = principal_of(request)
        return f"{principal.name if principal else '?'} from {request.remote or '?'}"

    def _admins(self) -> list[str]:
        return [u.name for u in self._store.users.values() if u.role == "admin"]

    async def users(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"name": u.name, "role": u.role}
                for u in sorted(self._store.users.values(), key=lambda u: u.name)
            ]
        )

    async def add_user(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, _MAX_BODY)
        if body is None:
            return refuse_field(400, "send a JSON object: name, role, password")
        name, role, password = (str(body.get(k, "")) for k in ("name", "role", "password"))
        if name in self._store.users:
            return refuse_field(409, f"a user named {name!r} exists", "name")
        problem = await self._set_password(name, password, role or "viewer")
        if problem is not None:
            return problem
        logger.warning("user %s (%s) added by %s", name, role or "viewer", self._who(request))
        return web.json_response({"name": name, "role": role or "viewer"}, status=201)

    async def _set_password(
        self, name: str, password: str, role: str | None
    ) -> web.Response | None:
        try:
            check_strength(password)
        except WeakPassword as error:
            return refuse_field(400, str(error), "password")
        try:
            # Argon2: off the event loop; the store itself changes on it.
            user = await asyncio.to_thread(self._store.new_user, name, password, role)
        except CredentialError as error:
            field = "role" if "role" in str(error) else "name"
            return refuse_field(400, str(error), field)
        _written(self._store.put_user, user)
        self._auth.refresh()
        return None

    async def change_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._store.users:
            return refuse_field(404, f"no user {name!r}")
        body = await read_json_object(request, _MAX_BODY)
        if body is None or not ({"role", "password"} & body.keys()):
            return refuse_field(400, "send a JSON object with role, password or both")
        role = body.get("role")
        if "password" in body:
            try:  # before anything changes: a refusal changes nothing
                check_strength(str(body["password"]))
            except WeakPassword as error:
                return refuse_field(400, str(error), "password")
        if role is not None:
            if role != "admin" and self._admins() == [name]:
                return refuse_field(409, "the last admin stays an admin", "role")
            try:
                _written(self._store.set_role, name, str(role))
            except CredentialError as error:
                return refuse_field(400, str(error), "role")
            logger.warning("user %s made %s by %s", name, role, self._who(request))
        if "password" in body:
            problem = await self._set_password(name, str(body["password"]), None)
            if problem is not None:
                return problem
            logger.warning("password of %s reset by %s", name, self._who(request))
        self._auth.refresh()
        user = self._store.users[name]
        return web.json_response({"name": user.name, "role": user.role})

    async def remove_user(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._store.users:
            return refuse_field(404, f"no user {name!r}")
        if self._admins() == [name]:
            return refuse_field(409, "the last admin cannot be removed")
        _written(self._store.remove_user, name)
        self._auth.refresh()  # their logins end (Authenticator tells its listeners)
        logger.warning("user %s removed by %s", name, self._who(request))
        return web.Response(status=204)

    async def tokens(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response(
            [
                {
                    "id": t.id, "name": t.name, "role": t.role, "created": t.created,
                    "expires": t.expires, "expired": t.expired(now),
                }
                for t in sorted(self._store.tokens.values(), key=lambda t: t.created)
            ]
        )  # fmt: skip

    async def create_token(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, _MAX_BODY)
        if body is None:
            return refuse_field(400, "send a JSON object: name, role, lifetime_days")
        name, role = str(body.get("name", "")), str(body.get("role") or "viewer")
        days = body.get("lifetime_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 36500
        ):
            return refuse_field(
                400, "lifetime_days: a number of days above 0, or none", "lifetime_days"
            )
        try:
            secret = _written(
                self._store.create_token, name, role, None if days is None else float(days)
            )
        except CredentialError as error:
            field = "role" if "role" in str(error) else "name"
            return refuse_field(409 if "exists" in str(error) else 400, str(error), field)
        self._auth.refresh()
        token = next(t for t in self._store.tokens.values() if t.name == name)
        logger.warning("token %s (%s) created by %s", name, role, self._who(request))
        return web.json_response(
            {"id": token.id, "name": name, "role": role, "token": secret}, status=201
        )

    async def revoke_token(self, request: web.Request) -> web.Response:
        token_id = request.match_info["id"]
        if token_id not in self._store.tokens:
            return refuse_field(404, f"no token {token_id!r}")
        token = _written(self._store.revoke_token_id, token_id)
        self._auth.refresh()
        logger.warning("token %s revoked by %s", token.name, self._who(request))
        return web.Response(status=204)
