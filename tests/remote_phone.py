"""A paired phone in Python, for the remote-access tests: it pairs through the page's
API on the LAN, then reaches the camera only through the broker, with messages
sealed as web/remote_crypto.js seals them, and aiortc as its browser."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from cryptography.hazmat.primitives.asymmetric import ec

from peercam.remote.keys import from_b64url
from peercam.remote.pairing import check_response, make_request
from peercam.remote.sealing import DeviceChannel
from tests.access import Access
from tests.channel_client import ChannelClient
from tests.mqtt_broker import PASSWORD, USER, Broker


async def pair(
    access: Access, name: str = "Test phone"
) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    """Pair a new device key through the admin's offer; returns the key and the
    camera's pairing response (with its rendezvous)."""
    key = ec.generate_private_key(ec.SECP256R1())
    async with access.session() as http:
        async with http.post(access.base + "/api/remote/offers") as response:
            assert response.status == 201, await response.text()
            offer = await response.json()
        _, camera_id, secret = urlsplit(offer["url"]).fragment.split(".", 2)
        secret_bytes = from_b64url(secret, "secret")
        request, pair_key = make_request(secret_bytes, camera_id, key, name, time.time())
        async with http.post(access.base + "/api/remote/pair", json=request) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
    check_response(answer, pair_key, request)
    return key, answer


class RemotePhone:
    def __init__(
        self,
        broker: Broker,
        key: ec.EllipticCurvePrivateKey,
        pairing: dict[str, Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.camera_id: str = pairing["camera"]
        self.device_id: str = pairing["device"]
        self.prefix: str = pairing["rendezvous"]["topic_prefix"]
        self.sealer = DeviceChannel(
            key, from_b64url(pairing["camera_key"], "camera_key"), clock=clock
        )
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []  # every reply, kept for the tests' checks
        self.sent: list[bytes] = []  # every sealed message, for replay tests
        self.pc: RTCPeerConnection | None = None
        self.channel: ChannelClient | None = None
        self._stack = AsyncExitStack()
        self._client: aiomqtt.Client | None = None

    @property
    def camera_topic(self) -> str:
        return f"{self.prefix}/{self.camera_id}/camera"

    async def __aenter__(self) -> RemotePhone:
        context = ssl.create_default_context(cafile=str(self.broker.ca))
        client = aiomqtt.Client(
            self.broker.host, self.broker.port, username=USER, password=PASSWORD,
            tls_context=context, identifier=f"phone-{secrets.token_hex(4)}",
        )  # fmt: skip
        try:
            self._client = await self._stack.enter_async_context(client)
            topic = f"{self.prefix}/{self.camera_id}/device/{self.device_id}"
            await client.subscribe(topic, qos=1)
        except BaseException:
            await self._stack.aclose()
            raise
        task = asyncio.create_task(self._read(client))
        self._stack.push_async_callback(_cancel, task)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.pc is not None:
            await self.pc.close()
        await self._stack.aclose()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            reply = json.loads(self.sealer.open(message.payload).payload)
            self.received.append(reply)
            self.replies.put_nowait(reply)

    async def publish(self, data: bytes) -> None:
        assert self._client is not None
        await self._client.publish(self.camera_topic, data, qos=1)

    async def send(self, message: dict[str, Any]) -> None:
        sealed = self.sealer.seal(json.dumps(message).encode())
        self.sent.append(sealed)
        await self.publish(sealed)

    async def reply(self, call: str, within: float = 15) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                message = await self.replies.get()
                if message.get("call") == call:
                    return message

    async def connect(self, call: str = "call-1") -> dict[str, Any]:
        """ICE servers, then an offer with the page's data channel; returns the answer."""
        await self.send({"type": "ice", "call": call})
        ice = await self.reply(call)
        assert ice["type"] == "ice", ice
        servers = [RTCIceServer(**server) for server in ice["servers"]]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.channel = ChannelClient(self.pc.createDataChannel("peercam"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send({"type": "offer", "call": call, "sdp": self.pc.localDescription.sdp})
        answer = await self.reply(call)
        assert answer["type"] == "answer", answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# A camera with all a remote viewer uses: talkback (tests/alsa_fixture.py's card), a
# door relay (gpiozero's mock pins in the daemon), event clips.
DOORBELL_CAMERA = """
[camera]
source = "test"
size = "320x240"
fps = 15
[video]
keyframe_interval = 1.0
[talkback]
device = "peercam_speaker"
[gpio]
relay_pin = 22
[recording]
enabled = true
preroll_seconds = 1.0
post_seconds = 1.0
"""


def remote_config(broker: Broker, state: Path | None = None, **more: str) -> str:
    """The daemon's [remote] section for `broker` (its TLS listener for the camera, its
    WebSocket one for pages)."""
    lines = [
        "[remote]",
        "enabled = true",
        f'broker = "mqtts://{broker.host}:{broker.port}"',
        f'ca_file = "{broker.ca}"',
        f'username = "{USER}"',
        f'password = "{PASSWORD}"',
        f'page_broker = "{broker.ws_url}"'
        if broker.ws_port
        else 'page_broker = "ws://127.0.0.1:9/"',
        f'page_username = "{USER}"',
        f'page_password = "{PASSWORD}"',
        *(f'{key} = "{value}"' for key, value in more.items()),
    ]
    return "\n".join(lines) + "\n"
