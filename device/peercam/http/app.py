"""The aiohttp application: all handlers behind one error policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from aiohttp import web

from peercam.auth.authenticator import Authenticator
from peercam.auth.setup_code import SetupCode
from peercam.config import Config
from peercam.http.access import AccessControl
from peercam.http.errors import plain_errors
from peercam.http.login import LoginHandlers
from peercam.http.observability import ObservabilityHandlers
from peercam.http.security_headers import security_headers_connecting_to
from peercam.http.setup import SetupHandlers
from peercam.http.viewer_page import ViewerPage
from peercam.http.whep import WhepHandlers
from peercam.metrics import Metrics
from peercam.rtc.registry import SessionRegistry


@runtime_checkable
class RouteGroup(Protocol):
    def routes(self) -> list[web.RouteDef]: ...


def build_app(
    config: Config,
    sessions: SessionRegistry,
    metrics: Metrics,
    authenticator: Authenticator,
    *more: RouteGroup,
    setup_code: SetupCode,
    notices: Callable[[], list[str]] = list,
) -> web.Application:
    """`notices`: what the user should know about the camera's setup (settings from
    the SD card that could not be used); shown on the setup page and to admins."""
    pages = ViewerPage()
    access = AccessControl(authenticator, lambda: pages.setup_page(notices()))
    app = web.Application(
        # Access control inside the error policy, so its refusals are plain lines too.
        middlewares=[plain_errors, access.middleware],
        client_max_size=config.server.max_sdp_bytes,
    )
    # A paired phone away from home signals through the broker's WebSocket.
    remote = config.remote
    brokers = [remote.phone_broker] if remote.enabled and remote.phone_broker else []
    app.on_response_prepare.append(security_headers_connecting_to(brokers))
    groups: list[RouteGroup] = [
        WhepHandlers(config, sessions),
        ObservabilityHandlers(metrics, sessions),
        LoginHandlers(authenticator, pages, notices),
        SetupHandlers(authenticator, setup_code, pages, notices),
        pages,
        *more,
    ]
    for group in groups:
        app.add_routes(group.routes())
    return app
