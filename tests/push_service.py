"""A push service run by the tests, as a browser vendor's would answer the daemon.

It checks every request the way RFC 8030/8292 ask a push service to: the VAPID JWT's
ES256 signature against the key the subscription was made with, its audience and
expiry. It decrypts the body twice, with the `http_ece` package and with the few lines
of RFC 8291 below (on `cryptography`'s primitives), so the daemon's encryption is
checked against more than the library it was made with.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """What a browser keeps for one subscription: its ECDH key and auth secret."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def subscription(self, base: str) -> dict[str, Any]:
        return {
            "endpoint": f"{base}/push/{self.name}",
            "keys": {"p256dh": b64url(self.p256dh), "auth": b64url(self.auth)},
        }


def rfc8291_decrypt(body: bytes, device: Device) -> bytes:
    """RFC 8291 section 3.4 and RFC 8188 with one record, written from the RFCs."""
    salt, record_size, id_length = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    sender_public = body[21 : 21 + id_length]
    ciphertext = body[21 + id_length :]
    assert record_size >= 18 and len(ciphertext) <= record_size
    shared = device.key.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
    )
    info = b"WebPush: info\x00" + device.p256dh + sender_public
    ikm = HKDF(hashes.SHA256(), 32, device.auth, info).derive(shared)
    cek = HKDF(hashes.SHA256(), 16, salt, b"Content-Encoding: aes128gcm\x00").derive(ikm)
    nonce = HKDF(hashes.SHA256(), 12, salt, b"Content-Encoding: nonce\x00").derive(ikm)
    padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
    content = padded.rstrip(b"\x00")
    assert content.endswith(b"\x02"), "the last record ends with the 0x02 delimiter"
    return content[:-1]


@dataclass
class Push:
    device: str
    arrived: float  # time.time()
    headers: dict[str, str]
    claims: dict[str, Any]
    payload: dict[str, Any]
    status: int


class PushService:
    def __init__(self, vapid_key: str = "") -> None:
        self.vapid_key = vapid_key  # the daemon's public key, base64url; set once known
        self.devices: dict[str, Device] = {}
        self.answers: dict[str, int] = {}  # device: status to answer (default 201)
        self.delays: dict[str, float] = {}  # device: seconds before answering (a hung service)
        self.received: list[Push] = []
        self.refused: list[str] = []
        self.base = ""
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self._stopping = asyncio.Event()

    def device(self, name: str) -> Device:
        self.devices[name] = Device(name)
        return self.devices[name]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{device}", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _check_vapid(self, header: str) -> dict[str, Any]:
        scheme, _, params = header.partition(" ")
        assert scheme == "vapid", header
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        assert parts["k"] == self.vapid_key, "signed with another key than the subscription's"
        signed, _, signature = parts["t"].rpartition(".")
        head_text, _, claims_text = signed.partition(".")
        assert json.loads(unb64url(head_text)) == {"typ": "JWT", "alg": "ES256"}
        raw = unb64url(signature)
        assert len(raw) == 64
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
        try:
            public.verify(der, signed.encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AssertionError("bad VAPID signature") from None
        claims: dict[str, Any] = json.loads(unb64url(claims_text))
        assert claims["aud"] == self.base, claims
        now = time.time()
        assert now < claims["exp"] <= now + 24 * 3600, claims  # RFC 8292: at most 24 h
        assert str(claims.get("sub", "")).startswith(("mailto:", "https:")), claims
        return claims

    async def _receive(self, request: web.Request) -> web.Response:
        arrived = time.time()
        name = request.match_info["device"]
        device = self.devices.get(name)
        try:
            assert device is not None, f"no device {name}"
            claims = self._check_vapid(request.headers["Authorization"])
            assert request.headers["Content-Encoding"] == "aes128gcm"
            assert int(request.headers["TTL"]) >= 0
            body = await request.read()
            ours = rfc8291_decrypt(body, device)
            theirs = http_ece.decrypt(
                body, private_key=device.key, auth_secret=device.auth, version="aes128gcm"
            )
            assert ours == theirs
            payload = json.loads(ours)
        except (AssertionError, KeyError, ValueError) as error:
            self.refused.append(f"{name}: {error!r}")
            return web.Response(status=400, text=str(error))
        status = self.answers.get(name, 201)
        if name in self.delays:
            # Until the delay is over or the service stops, whichever comes first.
            try:
                await asyncio.wait_for(self._stopping.wait(), self.delays[name])
            except TimeoutError:
                pass
        async with self._arrived:
            self.received.append(
                Push(name, arrived, dict(request.headers), claims, payload, status)
            )
            self._arrived.notify_all()
        return web.Response(status=status)

    async def wait_for(self, count: int, within: float = 15) -> list[Push]:
        """Until `count` pushes have arrived in all; they are returned."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), within
            )
            return list(self.received)
