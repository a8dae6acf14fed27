"""First run in the browser: the setup code (auth/setup_code.py) and a password make
the admin, once. Until then every page is the setup page (http/access.py).

Guessing the code is held to the login's throttle (per address and in all), and a
wrong code counts as a failed login. Two right answers at once make one admin: the
second finds the camera set up. Whoever sets the password is logged in by it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from peercam.auth.authenticator import Authenticator, LoginThrottled
from peercam.auth.passwords import WeakPassword, check_strength
from peercam.auth.setup_code import SetupCode, shown
from peercam.http.access import cross_origin
from peercam.http.errors import refuse, refuse_field
from peercam.http.forms import Form, read_form
from peercam.http.login import set_login_cookie
from peercam.http.viewer_page import ViewerPage

logger = logging.getLogger(__name__)

ADMIN = "admin"


def _answer(form: Form, status: int, message: str, field: str | None = None) -> web.Response:
    """A refusal the page shows beside `field`; a form posted without script comes
    back to the setup page with the message."""
    if form.json_wanted:
        return refuse_field(status, message, field)
    raise web.HTTPSeeOther(f"/setup?error={status}")


class SetupHandlers:
    def __init__(
        self,
        authenticator: Authenticator,
        code: SetupCode,
        pages: ViewerPage,
        notices: Callable[[], list[str]],
    ) -> None:
        self._auth = authenticator
        self._code = code
        self._pages = pages
        self._notices = notices
        self._setting = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/setup", self.page), web.post("/api/setup", self.set_up)]

    async def page(self, request: web.Request) -> web.Response:
        if not self._auth.setup_needed():
            raise web.HTTPSeeOther("/")
        response = self._pages.setup_page(self._notices())
        response.set_status(200)
        return response

    async def set_up(self, request: web.Request) -> web.Response:
        if cross_origin(request):
            return refuse(403, "cross-origin request refused")
        if not self._auth.setup_needed():
            return refuse(409, "this camera already has an admin: log in instead")
        form = await read_form(request)
        if form is None:
            return refuse(400, "send code and password as a form or JSON object, under 4 KiB")
        client = request.remote or ""
        try:
            self._auth.check_attempt(client)
        except LoginThrottled as error:
            throttled = _answer(form, 429, str(error), "code")
            throttled.headers["Retry-After"] = f"{error.retry_after:.0f}"
            return throttled
        if self._code.current() is None:
            # The admin was removed while running (`peercam passwd --remove`): a
            # new code, told where the first one was.
            code = await asyncio.to_thread(self._code.ensure)
            logger.warning("no admin: the setup code is now %s", shown(code))
        if not self._code.matches(form.fields.get("code", "")):
            self._auth.record_failure(client, "a wrong setup code")
            return _answer(
                form, 403, "wrong setup code: it is on the camera's console, in "
                "peercam-setup.txt on its SD card and in `peercam check`", "code",
            )  # fmt: skip
        password = form.fields.get("password", "")
        if form.fields.get("repeat", password) != password:
            return _answer(form, 400, "the two passwords differ", "repeat")
        try:
            check_strength(password)
        except WeakPassword as error:
            return _answer(form, 400, str(error), "password")
        async with self._setting:
            if not self._auth.setup_needed():  # someone else was quicker
                return refuse(409, "this camera already has an admin: log in instead")
            # Argon2 hashing off the event loop; the store changes on it.
            store = self._auth.store
            user = await asyncio.to_thread(store.new_user, ADMIN, password, ADMIN)
            try:
                store.put_user(user)
            except OSError as error:
                logger.error("cannot save the admin password: %s", error)
                return refuse(500, f"cannot save the password: {error.strerror or error}")
            self._code.consume()
            self._auth.refresh()
        logger.warning("admin password set in the browser from %s with the setup code", client)
        value = self._auth.sessions.start(ADMIN)
        response: web.Response = (
            web.json_response({"user": ADMIN, "role": ADMIN})
            if form.json_wanted
            else web.HTTPSeeOther("/")
        )
        set_login_cookie(response, value, self._auth.sessions.lifetime)
        if isinstance(response, web.HTTPSeeOther):
            raise response
        return response
