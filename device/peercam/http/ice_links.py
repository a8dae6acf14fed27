"""ICE servers as HTTP Link headers (RFC 9725, section 4.6), for WHIP/WHEP clients."""

from __future__ import annotations

from peercam.config import IceServer


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_headers(servers: list[IceServer]) -> list[str]:
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                link += (
                    f"; username={_quoted(server.username)}"
                    f"; credential={_quoted(server.credential)}"
                    '; credential-type="password"'
                )
            links.append(link)
    return links
