"""The viewer page: the files of web/, shipped in the package as peercam.webroot."""

from __future__ import annotations

import html
from importlib import resources

from aiohttp import web

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",  # the app's icons
}


class ViewerPage:
    """Serves a fixed set of files read once at start: no path from a request ever
    reaches the file system."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        for entry in resources.files("peercam.webroot").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in _TYPES:
                self._files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
        if "index.html" not in self._files:
            raise RuntimeError("the viewer page (peercam.webroot/index.html) is not installed")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/settings", self.settings),
            web.get("/welcome", self.welcome),
            web.get("/ui/{name}", self.asset),
        ]

    async def settings(self, request: web.Request) -> web.Response:
        """The settings page (admins only: http/access.py)."""
        return self.page("settings.html")

    async def welcome(self, request: web.Request) -> web.Response:
        """The first run's page after the password (admins only: http/access.py)."""
        return self.page("welcome.html")

    def page(self, name: str) -> web.Response:
        return self._serve(name)

    def setup_page(self, notices: list[str]) -> web.Response:
        """The page shown until an admin password exists, with what the SD card's
        settings got wrong (a too-short password among them), served with 503."""
        response = self._serve("setup.html")
        if notices and response.body is not None:
            items = "".join(f"<li>{html.escape(notice)}</li>" for notice in notices)
            section = (
                '<section class="notices"><h2>Not used from peercam.txt</h2>'
                f"<ul>{items}</ul></section>"
            )
            assert isinstance(response.body, bytes)
            response.body = response.body.replace(b"<!-- notices -->", section.encode())
        response.set_status(503)
        return response

    def _serve(self, name: str) -> web.Response:
        body, content_type = self._files[name]
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def index(self, request: web.Request) -> web.Response:
        return self._serve("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._files:
            raise web.HTTPNotFound()
        return self._serve(name)
