"""The plain-HTTP port: everything is redirected to the same path over HTTPS."""

from __future__ import annotations

from aiohttp import web

from peercam.http.errors import refuse
from peercam.http.security_headers import security_headers


def build_redirect_app(https_port: int) -> web.Application:
    async def redirect(request: web.Request) -> web.StreamResponse:
        host = request.url.host
        if not host:
            return refuse(400, "no Host header: use https:// and the camera's address")
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        port = "" if https_port == 443 else f":{https_port}"
        # 308 keeps the method and body, so a WHEP POST to http:// still works.
        raise web.HTTPPermanentRedirect(f"https://{host}{port}{request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    app.on_response_prepare.append(security_headers)
    return app
