"""The aiohttp application: all handlers behind one error policy."""

from __future__ import annotations

from aiohttp import web

from peercam.config import Config
from peercam.http.errors import plain_errors
from peercam.http.observability import ObservabilityHandlers
from peercam.http.viewer_page import ViewerPage
from peercam.http.whep import WhepHandlers
from peercam.metrics import Metrics
from peercam.rtc.registry import SessionRegistry


def build_app(config: Config, sessions: SessionRegistry, metrics: Metrics) -> web.Application:
    app = web.Application(
        middlewares=[plain_errors],
        client_max_size=config.server.max_sdp_bytes,
    )
    app.add_routes(WhepHandlers(config, sessions).routes())
    app.add_routes(ObservabilityHandlers(metrics, sessions).routes())
    app.add_routes(ViewerPage().routes())
    return app
