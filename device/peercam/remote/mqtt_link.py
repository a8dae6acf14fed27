"""The rendezvous as an MQTT broker (self-hosted mosquitto or a hosted one), over TCP,
TLS or WebSockets, reached outbound only.

Topics, under `remote.topic_prefix` (default "peercam"):
    <prefix>/<camera id>/camera               devices to the camera (it subscribes)
    <prefix>/<camera id>/device/<device id>   the camera to one device
A broker's ACL can confine each login to its own topics; the sealing makes that a
matter of tidiness, not of trust (a message on the wrong topic is refused by name).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt
from prometheus_client import Counter, Gauge

from peercam.config import RemoteConfig
from peercam.metrics import Metrics
from peercam.remote.rendezvous import Deliver, LinkDown
from peercam.service.reconnecting import keep_linked

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    websockets: bool
    path: str

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """`url` as RemoteConfig has checked it: mqtt(s):// or ws(s):// host[:port][/path]."""
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not a broker URL: {url!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or _DEFAULT_PORTS[scheme],
            tls=scheme in ("mqtts", "wss"),
            websockets=scheme in ("ws", "wss"),
            path=parts.path or "/mqtt",
        )

    def __str__(self) -> str:
        scheme = {(False, False): "mqtt", (True, False): "mqtts"}.get(
            (self.tls, self.websockets), "wss" if self.tls else "ws"
        )
        path = self.path if self.websockets else ""
        return f"{scheme}://{self.host}:{self.port}{path}"


def camera_topic(prefix: str, camera_id: str) -> str:
    return f"{prefix}/{camera_id}/camera"


def device_topic(prefix: str, camera_id: str, device_id: str) -> str:
    return f"{prefix}/{camera_id}/device/{device_id}"


class MqttRendezvous:
    """A RendezvousLink over aiomqtt. One task keeps the link; it ends only on stop."""

    def __init__(self, settings: RemoteConfig, camera_id: str, metrics: Metrics) -> None:
        self._settings = settings
        self.address = BrokerAddress.parse(settings.broker)
        self._camera_id = camera_id
        self._inbox = camera_topic(settings.topic_prefix, camera_id)
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._context: ssl.SSLContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._linked = Gauge(
            "peercam_remote_linked",
            "1 while the camera is linked to its remote-access rendezvous",
            registry=metrics.registry,
        )
        self._links = Counter(
            "peercam_remote_links",
            "Links made to the remote-access rendezvous (reconnects add to it)",
            registry=metrics.registry,
        )

    def start(self, deliver: Deliver) -> None:
        self._task = asyncio.create_task(self._stay_linked(deliver), name="remote-link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def send(self, device_id: str, data: bytes) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            raise LinkDown(f"not linked to {self.address}")
        topic = device_topic(self._settings.topic_prefix, self._camera_id, device_id)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await client.publish(topic, data, qos=1)
        except (aiomqtt.MqttError, TimeoutError) as error:
            raise LinkDown(f"sending to {self.address}: {error or 'timed out'}") from None

    def _tls_context(self) -> ssl.SSLContext | None:
        """Reads the CA file: made in a thread, once."""
        if not self.address.tls:
            return None
        return ssl.create_default_context(cafile=self._settings.ca_file)

    def _client_for(self, context: ssl.SSLContext | None) -> aiomqtt.Client:
        address = self.address
        return aiomqtt.Client(
            address.host,
            address.port,
            username=self._settings.username,
            password=self._settings.password,
            # A fresh id per link: a broker that still holds the last one (its
            # keepalive not yet run out) would otherwise drop the new one or the old.
            identifier=f"peercam-{self._camera_id[:12]}-{secrets.token_hex(3)}",
            keepalive=self._settings.keepalive,
            timeout=10.0,
            tls_context=context,
            transport="websockets" if address.websockets else "tcp",
            websocket_path=address.path if address.websockets else None,
            max_queued_incoming_messages=64,
        )

    async def _stay_linked(self, deliver: Deliver) -> None:
        await keep_linked(
            lambda linked: self._link(deliver, linked),
            f"remote access: rendezvous {self.address}",
            (aiomqtt.MqttError, OSError, ssl.SSLError),
            on_down=self._down,
        )

    async def _link(self, deliver: Deliver, linked: Callable[[], None]) -> None:
        # Read once, in a thread; a CA file that cannot be read is retried like a
        # broker that cannot be reached.
        if self._context is None and self.address.tls:
            self._context = await asyncio.to_thread(self._tls_context)
        async with self._client_for(self._context) as client:
            await client.subscribe(self._inbox, qos=1)
            self._client = client
            self.connected.set()
            self._linked.set(1)
            self._links.inc()
            logger.info("remote access: linked to %s", self.address)
            linked()
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    await deliver(bytes(payload))

    def _down(self) -> None:
        self._client = None
        self.connected.clear()
        self._linked.set(0)
