"""Log in (a password for a session cookie), log out, and who am I."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.login_sessions import COOKIE
from peercam.http.access import SETUP_NEEDED, principal_of
from peercam.http.errors import refuse
from peercam.http.forms import read_form
from peercam.http.viewer_page import ViewerPage

logger = logging.getLogger(__name__)


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


def set_login_cookie(response: web.StreamResponse, value: str, lifetime: float) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(lifetime),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


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
        form = await read_form(request)
        if form is None:
            return None
        fields = form.fields
        user = fields.get("user") or "admin"
        return user, fields.get("password", ""), safe_next(fields.get("next")), form.json_wanted

    async def login(self, request: web.Request) -> web.Response:
        if self._auth.setup_needed():
            return refuse(503, SETUP_NEEDED)
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
        set_login_cookie(response, value, self._auth.sessions.lifetime)
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
