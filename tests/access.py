"""How a test reaches a daemon: its HTTPS address, trust in its own certificate (so
the certificate is checked, not waved through), and the admin's credentials."""

from __future__ import annotations

import base64
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

TEST_PASSWORD = "peercam-test-password"


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Access:
    base: str  # https://127.0.0.1:PORT
    cert: Path | None = None  # the daemon's self-signed certificate, to trust
    headers: dict[str, str] = field(default_factory=lambda: basic("admin", TEST_PASSWORD))

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.base.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=str(self.cert) if self.cert else None)

    def session(self, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
        """An aiohttp client with these credentials (or `headers` instead)."""
        context = self.ssl_context()
        connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
        chosen = self.headers if headers is None else headers
        # unsafe: aiohttp otherwise keeps no cookies from a server named by IP address.
        jar = aiohttp.CookieJar(unsafe=True)
        return aiohttp.ClientSession(headers=chosen, connector=connector, cookie_jar=jar)

    def with_headers(self, headers: dict[str, str]) -> Access:
        return Access(self.base, self.cert, headers)

    def urlopen(
        self, path: str, method: str = "GET", data: bytes | None = None, timeout: float = 10
    ) -> bytes:
        request = urllib.request.Request(
            self.base + path, method=method, data=data, headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as r:
            body: bytes = r.read()
            return body
