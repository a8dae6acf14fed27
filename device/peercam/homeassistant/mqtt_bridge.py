"""The camera as a Home Assistant device over MQTT: an output on the event bus.

A ring, motion, the call state and the event picture go to the broker; the door
button and the recording switch come back and go through the doorbell's own logic,
as the page's commands do. The broker may be away at any time: the connection is
retried with backoff in a task of its own, the event bus never waits on it, and what
happened meanwhile is told on reconnecting (the states; a ring only if it is fresh).
A last will marks the camera unavailable if the daemon dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from peercam.config import Config
from peercam.doorbell.call import Doorbell
from peercam.events import (
    Answered,
    CallEnded,
    Declined,
    Event,
    EventBus,
    Missed,
    Motion,
    RecordingState,
    RecordingSwitch,
    Ring,
)
from peercam.homeassistant import discovery
from peercam.homeassistant.discovery import OFF, OFFLINE, ON, ONLINE, Topics
from peercam.metrics import Metrics
from peercam.motion.hold import MotionHold
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline
from peercam.recording.live_snapshot import NoPicture, current_jpeg
from peercam.service.device_id import device_id
from peercam.service.reconnecting import keep_linked
from peercam.service.state_dir import state_directory

logger = logging.getLogger(__name__)

RING_FRESH = 30.0  # a ring older than this when the broker is back is not sent
SENSOR_PERIOD = 30.0
BACKOFF = (1.0, 60.0)


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when it happened


class MqttBridge:
    def __init__(
        self,
        config: Config,
        events: EventBus,
        pipeline: MediaPipeline,
        metrics: Metrics,
        doorbell: Doorbell | None,
    ) -> None:
        self.config = config
        self.settings = config.mqtt
        self._events = events
        self._pipeline = pipeline
        self._metrics = metrics
        self._doorbell = doorbell
        self._state_dir = state_directory(config.server.state_dir)
        self.device_id = ""
        self.topics = Topics("")
        # What a reconnect republishes (retained states), and what waits to be sent.
        self._states: dict[str, _Message] = {}
        self._pending: deque[_Message] = deque(maxlen=32)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._motion = MotionHold(lambda on: self._set_state(self.topics.motion, ON if on else OFF))
        self._picture_task: asyncio.Task[None] | None = None
        self._bus: asyncio.Queue[Event] | None = None
        self.connected = asyncio.Event()
        self._client_now: aiomqtt.Client | None = None
        self._context: ssl.SSLContext | None = None
        self._switch_offered = config.recording.enabled and config.mqtt.recording_switch

    @property
    def name(self) -> str:
        return f"Home Assistant over MQTT at {self.settings.host}:{self._port}"

    @property
    def _port(self) -> int:
        return self.settings.port or (8883 if self.settings.tls else 1883)

    async def start(self) -> None:
        self.device_id = await asyncio.to_thread(device_id, self._state_dir)
        self.topics = Topics(f"{self.settings.topic_prefix}/{self.device_id}")
        self._set_state(self.topics.motion, OFF)
        self._set_state(self.topics.call, "idle")
        # The recording switch's state comes from the recorder as it starts.
        self._bus = self._events.subscribe()
        self._tasks = [
            asyncio.create_task(self._follow(self._bus), name="mqtt-events"),
            asyncio.create_task(self._watch_sensors(), name="mqtt-sensors"),
            asyncio.create_task(self._stay_connected(), name="mqtt-connection"),
        ]

    # -- what happens at the door -------------------------------------------------

    def _set_state(self, topic: str, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        message = _Message(topic, data, True, time.monotonic())
        self._states[topic] = message
        self._send(message)

    def _send(self, message: _Message) -> None:
        self._pending.append(message)
        self._wake.set()

    async def _follow(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            if isinstance(event, Ring):
                payload = {"event_type": "ring", "origin": event.origin, "at": event.at}
                self._send(_Message(self.topics.ring, _json(payload), False, time.monotonic()))
                self._take_picture()
            elif isinstance(event, Motion):
                self._motion.moved()
                self._take_picture()
            elif isinstance(event, RecordingState):
                self._set_state(self.topics.recording, ON if event.on else OFF)
            if isinstance(event, Ring | Answered | Declined | Missed | CallEnded):
                if self._doorbell is not None:
                    self._set_state(self.topics.call, self._doorbell.state.value)

    def _take_picture(self) -> None:
        if self._picture_task is not None and not self._picture_task.done():
            return  # one at a time: a picture a moment later is the same picture
        self._picture_task = asyncio.create_task(self._picture(), name="mqtt-picture")

    async def _picture(self) -> None:
        try:
            jpeg = await current_jpeg(self._pipeline, None)
        except NoPicture as error:
            logger.info("Home Assistant: no event picture: %s", error)
            return
        self._set_state(self.topics.picture, jpeg)

    async def _watch_sensors(self) -> None:
        while True:
            viewers = self._metrics.registry.get_sample_value("peercam_viewers") or 0.0
            self._update(self.topics.viewers, str(int(viewers)))
            free = await asyncio.to_thread(_free_megabytes, self._state_dir)
            if free is not None:
                self._update(self.topics.storage_free, str(free))
            await asyncio.sleep(SENSOR_PERIOD)

    def _update(self, topic: str, value: str) -> None:
        known = self._states.get(topic)
        if known is None or known.payload != value.encode():
            self._set_state(topic, value)

    # -- the broker ---------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        """Reads the CA file: made in a thread, once."""
        if not self.settings.tls:
            return None
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _client(self, context: ssl.SSLContext | None) -> aiomqtt.Client:
        settings = self.settings
        return aiomqtt.Client(
            settings.host,
            self._port,
            username=settings.username,
            password=settings.password,
            identifier=f"peercam-{self.device_id}",
            keepalive=settings.keepalive,
            timeout=10.0,
            tls_context=context,
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            max_queued_incoming_messages=64,
        )

    async def _stay_connected(self) -> None:
        await keep_linked(
            self._connect,
            "Home Assistant: MQTT broker",
            (aiomqtt.MqttError, OSError, ssl.SSLError),
            BACKOFF,
            on_down=self.connected.clear,
        )

    async def _connect(self, linked: Callable[[], None]) -> None:
        # Read once, in a thread; a CA file that cannot be read is retried like a
        # broker that cannot be reached.
        if self._context is None and self.settings.tls:
            self._context = await asyncio.to_thread(self._tls_context)
        async with self._client(self._context) as client:
            logger.info("Home Assistant: connected to the MQTT broker %s", self.name)
            linked()
            await self._serve(client)

    async def _serve(self, client: aiomqtt.Client) -> None:
        topics = self.topics
        await client.subscribe(f"{self.settings.discovery_prefix}/status")
        if self._switch_offered:
            await client.subscribe(topics.recording_set)
        if self.settings.door_button:
            await client.subscribe(topics.door_press)
        await self._announce(client)
        self._client_now = client
        self.connected.set()
        # Sending and receiving end together: a publish the broker never acknowledged
        # must end the connection (and so retry it), not leave rings queued unseen.
        tasks = {
            asyncio.create_task(self._send_pending(client), name="mqtt-send"),
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            self._client_now = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._command(client, str(message.topic), _bytes(message.payload))

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Discovery, availability and every state: after each (re)connection and
        whenever Home Assistant says it came back."""
        prefix = self.settings.discovery_prefix
        page = _page_url(self.config)
        for entity in discovery.entities(self.config, self.device_id, self.topics, page):
            topic = discovery.discovery_topic(prefix, self.device_id, entity)
            await client.publish(topic, discovery.payload(entity), qos=1, retain=True)
        await client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        for state in list(self._states.values()):
            await client.publish(state.topic, state.payload, qos=1, retain=True)
        # States just sent need not go again; a fresh ring still must.
        now = time.monotonic()
        fresh = [m for m in self._pending if not m.retain and now - m.at <= RING_FRESH]
        self._pending.clear()
        self._pending.extend(fresh)
        self._wake.set()

    async def _send_pending(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                message = self._pending[0]
                await client.publish(message.topic, message.payload, qos=1, retain=message.retain)
                self._pending.popleft()

    async def _command(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace").strip()
        if topic == f"{self.settings.discovery_prefix}/status":
            if text == ONLINE:
                logger.info("Home Assistant came back: announcing the camera again")
                await self._announce(client)
        elif topic == self.topics.recording_set and self._switch_offered:
            if text not in (ON, OFF):
                logger.info("Home Assistant: recording switch: %r is neither ON nor OFF", text[:20])
                return
            self._events.publish(RecordingSwitch(text == ON, "Home Assistant"))
        elif topic == self.topics.door_press and text == discovery.DOOR_PRESS:
            if self._doorbell is None:
                return
            outcome = await self._doorbell.open_door("mqtt", "Home Assistant")
            logger.info(
                "open-door from Home Assistant: %s", "done" if outcome.ok else outcome.reason
            )

    async def stop(self) -> None:
        if self._bus is not None:
            self._events.unsubscribe(self._bus)
        self._motion.close()
        client = self._client_now
        if client is not None:
            # Stopping on purpose: Home Assistant hears "offline" now, not when the
            # broker's keepalive runs out (the will covers a daemon that dies).
            try:
                async with asyncio.timeout(2):
                    await client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError):
                logger.info("Home Assistant: could not say offline; the will will")
        tasks = [*self._tasks, *([self._picture_task] if self._picture_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []


def _json(data: dict[str, object]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


def _free_megabytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free // 2**20
    except OSError:
        return None


def _page_url(config: Config) -> str:
    server = config.server
    if server.host in ("0.0.0.0", "::", ""):
        return ""  # Home Assistant knows which address it reaches; we do not
    scheme = "https" if server.tls else "http"
    return f"{scheme}://{server.host}:{server.port}/"


def build(context: OutputContext) -> list[Output]:
    """The bridge, when `[mqtt]` is enabled."""
    config = context.config
    if not config.mqtt.enabled:
        return []
    return [MqttBridge(config, context.events, context.pipeline, context.metrics, context.doorbell)]
