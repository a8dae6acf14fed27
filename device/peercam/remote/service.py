"""Remote access as one output: the camera's key and paired devices, pairing on the
LAN (pairing_api.py), and the outbound link to the rendezvous through which paired
devices open viewer sessions (signaling.py over a RendezvousLink)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from peercam.auth.authenticator import Authenticator
from peercam.config import Config
from peercam.metrics import Metrics
from peercam.outputs.output import Output, OutputContext
from peercam.remote.devices import DeviceStore
from peercam.remote.keys import load_or_make_camera_key
from peercam.remote.mqtt_link import BrokerAddress, MqttRendezvous
from peercam.remote.pairing import Pairing
from peercam.remote.pairing_api import PairingApi
from peercam.remote.sealing import CameraChannel
from peercam.remote.signaling import RemoteSignaling
from peercam.rtc.registry import SessionRegistry
from peercam.service.state_dir import state_directory

logger = logging.getLogger(__name__)


class RemoteAccess:
    def __init__(
        self,
        config: Config,
        sessions: SessionRegistry,
        accounts: Authenticator | None,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.settings = config.remote
        self._sessions = sessions
        self._accounts = accounts
        self._metrics = metrics
        self._state_dir = state_directory(config.server.state_dir)
        # Made in start (they read and may write files).
        self._devices: DeviceStore | None = None
        self._pairing: Pairing | None = None
        self._channel: CameraChannel | None = None
        self.link: MqttRendezvous | None = None
        self.signaling: RemoteSignaling | None = None

    @property
    def name(self) -> str:
        return f"remote access through {self.settings.broker}"

    @property
    def devices(self) -> DeviceStore:
        if self._devices is None:
            raise RuntimeError("remote access is not started")
        return self._devices

    @property
    def pairing(self) -> Pairing:
        if self._pairing is None:
            raise RuntimeError("remote access is not started")
        return self._pairing

    @property
    def channel(self) -> CameraChannel:
        if self._channel is None:
            raise RuntimeError("remote access is not started")
        return self._channel

    def _open_files(self) -> None:
        key = load_or_make_camera_key(self._state_dir)
        self._devices = DeviceStore(self._state_dir)
        self._pairing = Pairing(key, self._devices)
        self._channel = CameraChannel(key, self._devices)

    async def start(self) -> None:
        await asyncio.to_thread(self._open_files)
        webrtc = self.config.webrtc
        if self.settings.candidates == "public" and not (webrtc.ice_servers or webrtc.turn_rest):
            logger.warning(
                "remote access: no STUN or TURN server in webrtc.ice_servers, so remote "
                "viewers get no address of the camera they can reach: add one"
            )
        phone_broker = BrokerAddress.parse(self.settings.phone_broker)
        if not phone_broker.tls and phone_broker.host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "remote access: page_broker %s is plain ws://: browsers refuse it from the "
                "camera's HTTPS page; use wss://", phone_broker,
            )  # fmt: skip
        self.link = MqttRendezvous(self.settings, self.channel.camera_id, self._metrics)
        self.signaling = RemoteSignaling(
            self.config, self.channel, self.devices, self._sessions, self._accounts,
            self.link, self._metrics,
        )  # fmt: skip
        self.link.start(self.signaling.receive)
        logger.info("remote access: camera id %s", self.channel.camera_id)

    async def stop(self) -> None:
        # The link first: nothing it delivers afterwards can start a task.
        if self.link is not None:
            await self.link.stop()
        if self.signaling is not None:
            await self.signaling.close()

    async def unpaired(self, device_id: str) -> None:
        if self.signaling is not None:
            await self.signaling.unpaired(device_id)

    def routes(self) -> list[web.RouteDef]:
        return PairingApi(self).routes()


def build(context: OutputContext) -> list[Output]:
    if not context.config.remote.enabled or context.sessions is None:
        return []
    return [RemoteAccess(context.config, context.sessions, context.accounts, context.metrics)]
