"""One push request: RFC 8291 encryption and the RFC 8292 VAPID header by pywebpush
and py-vapid (no cryptography of our own), the POST by aiohttp.

pywebpush's webpush_async would encrypt and sign on the event loop, which also sends
every viewer's video; here that CPU work runs in a worker thread and only the POST
is awaited, under a timeout, with no redirects followed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher

from peercam.webpush.subscriptions import Subscription

_VAPID_LIFETIME = 12 * 3600  # RFC 8292 allows 24 h; push services take up to that
_RESIGN_MARGIN = 3600


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no answer (timeout, refused connection, bad endpoint)
    reason: str = ""

    @property
    def gone(self) -> bool:
        """The push service says the subscription no longer exists (RFC 8030 8.3)."""
        return self.status in (404, 410)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def endpoint_allowed(endpoint: str, hosts: list[str], allow_http: bool) -> bool:
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        return False
    if parts.username or parts.password:
        return False
    return any(host == h.lower() or host.endswith("." + h.lower()) for h in hosts)


class PushSender:
    def __init__(self, key: Vapid02, contact: str, timeout: float) -> None:
        self._key = key
        self._contact = contact
        self._timeout = timeout
        self._signed: dict[str, tuple[str, float]] = {}  # audience: (header, expires)
        self._signing = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No proxy from the environment, no cookies: a push request carries only
        # what RFC 8030 says.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        with self._signing:
            cached = self._signed.get(audience)
            if cached is not None and cached[1] - now > _RESIGN_MARGIN:
                return cached[0]
            expires = int(now) + _VAPID_LIFETIME
            claims = {"aud": audience, "exp": expires, "sub": self._contact}
            header: str = self._key.sign(claims)["Authorization"]
            self._signed[audience] = (header, expires)
            return header

    def _prepare(
        self, subscription: Subscription, payload: dict[str, Any], ttl: int, urgency: str,
        topic: str | None,
    ) -> tuple[bytes, dict[str, str]]:  # fmt: skip
        """Blocking (ECDH, AES-GCM, ECDSA): runs in a worker thread."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        encoded = WebPusher(subscription.info()).encode(data, "aes128gcm")
        headers = {
            "Authorization": self._authorization(subscription.endpoint),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(ttl),
            "Urgency": urgency,
        }
        if topic:
            headers["Topic"] = topic
        body: bytes = encoded["body"]
        return body, headers

    async def send(
        self,
        subscription: Subscription,
        payload: dict[str, Any],
        ttl: int,
        urgency: str = "normal",
        topic: str | None = None,
    ) -> Outcome:
        session = self._session
        if session is None:
            return Outcome(None, "not started")
        try:
            async with asyncio.timeout(self._timeout):
                body, headers = await asyncio.to_thread(
                    self._prepare, subscription, payload, ttl, urgency, topic
                )
                async with session.post(
                    subscription.endpoint, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    return Outcome(response.status, response.reason or "")
        except TimeoutError:
            return Outcome(None, f"no answer within {self._timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return Outcome(None, str(error) or type(error).__name__)
