"""Log in (a password for a session cookie), log out, and who am I."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, quote

from aiohttp import web

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.login_sessions import COOKIE
from peercam.http.access import principal_of
from peercam.http.errors import refuse
from peercam.http.viewer_page import ViewerPage

logger = logging.getLogger(__name__)

_MAX_FORM_BYTES = 4096


def safe_next(target: str | None) -> str:
    """Only a path on this server: never `//host` or a scheme, so a login link cannot
    send the browser elsewhere once logged in. Browsers drop tabs and line breaks from
    a URL and read a backslash as a slash (`/<tab>/evil.example` is `//evil.example` to
    them), so anything but printable ASCII makes it the page."""
    if (
        not target
        or not all("!" <= c <= "~" for c in target)
        or "\\" in target
        or not target.startswith("/")
        or target.startswith("//")
    ):
        return "/"
    return target


class LoginHandlers:
    def __init__(
        self,
        authenticator: Authenticator,
        pages: ViewerPage,
        notices: Callable[[], list[str]],
    ) -> None:
        self._auth = authenticator
        self._pages = pages
        self._notices = notices

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/login", self.login_page),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/api/session", self.whoami),
        ]

    async def login_page(self, request: web.Request) -> web.Response:
        if self._auth.setup_needed():
            return self._pages.setup_page(self._notices())
        return self._pages.page("login.html")

    async def _credentials(self, request: web.Request) -> tuple[str, str, str, bool] | None:
        """(user, password, next, wants JSON) from a form or a JSON body."""
        if request.content_length is not None and request.content_length > _MAX_FORM_BYTES:
            return None
        body = await request.content.read(_MAX_FORM_BYTES + 1)
        if len(body) > _MAX_FORM_BYTES:
            return None
        if request.content_type == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            fields = {k: v for k, v in data.items() if isinstance(v, str)}
            json_wanted = True
        elif request.content_type == "application/x-www-form-urlencoded":
            try:
                fields = dict(parse_qsl(body.decode("utf-8"), max_num_fields=8))
            except (UnicodeDecodeError, ValueError):
                return None
            json_wanted = False
        else:
            return None
        user = fields.get("user") or "admin"
        return user, fields.get("password", ""), safe_next(fields.get("next")), json_wanted

    async def login(self, request: web.Request) -> web.Response:
        if self._auth.setup_needed():
            return refuse(503, "no admin password is set yet: run `peercam passwd` on the camera")
        found = await self._credentials(request)
        if found is None:
            return refuse(
                400,
                "send user and password as a form (application/x-www-form-urlencoded) "
                "or JSON, under 4 KiB",
            )
        user, password, target, json_wanted = found
        client = request.remote or ""
        try:
            principal = await self._auth.check_password(user, password, client)
        except LoginThrottled as error:
            if json_wanted:
                return refuse(429, str(error), **{"Retry-After": f"{error.retry_after:.0f}"})
            raise web.HTTPSeeOther(
                f"/login?error=throttled&next={quote(target)}",
                headers={"Retry-After": f"{error.retry_after:.0f}"},
            ) from None
        if principal is None:
            if json_wanted:
                return refuse(401, "wrong user name or password")
            raise web.HTTPSeeOther(f"/login?error=wrong&next={quote(target)}")
        value = self._auth.sessions.start(principal.name)
        logger.info("%s logged in from %s", principal.name, client or "?")
        response = (
            web.json_response({"user": principal.name, "role": principal.role})
            if json_wanted
            else web.HTTPSeeOther(target)
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self._auth.sessions.lifetime),
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
        )
        if isinstance(response, web.HTTPSeeOther):
            raise response
        return response

    async def logout(self, request: web.Request) -> web.Response:
        value = request.cookies.get(COOKIE)
        if value:
            self._auth.logout(value)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        raise response

    async def whoami(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if principal is None:  # the access middleware lets no one here without one
            return refuse(401, "log in first")
        about: dict[str, object] = {"user": principal.name, "role": principal.role}
        if principal.role == "admin":
            about["notices"] = self._notices()
        return web.json_response(about)
