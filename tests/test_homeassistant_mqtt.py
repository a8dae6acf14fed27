"""The camera in Home Assistant over MQTT, against a real broker (mosquitto, TLS and a
password): discovery as Home Assistant reads it, a ring as a doorbell event, the door
button and the recording switch going through the doorbell's logic, the broker
restarting under a running camera, and the last will when the daemon dies."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
import urllib.error
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from peercam.config import build_config
from tests.conftest import SMALL, StartDaemon
from tests.daemon_process import DaemonProcess
from tests.inprocess_daemon import InProcessDaemon
from tests.mqtt_broker import PASSWORD, USER, Broker
from tests.watching_viewer import WatchingViewer

pytestmark = pytest.mark.timeout(180)

# What Home Assistant's MQTT platforms require in a discovery payload (the keys its
# schemas mark required), and the ones every entity of a device needs to be one.
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "button": {"command_topic"},
    "switch": {"command_topic"},
    "image": {"image_topic"},
}
EVERY_ENTITY = {"unique_id", "name", "device", "availability_topic"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "broker")
    running.start()
    yield running
    running.kill()


@asynccontextmanager
async def home_assistant(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    """A client as Home Assistant's would be: same broker, TLS, its own login."""
    context = ssl.create_default_context(cafile=str(broker.ca))
    client = aiomqtt.Client(
        "127.0.0.1", broker.port, username=USER, password=PASSWORD, tls_context=context
    )
    async with client:
        yield client


async def collect(client: aiomqtt.Client, until: object, within: float = 20) -> dict[str, bytes]:
    """Messages by topic (the latest of each) until `until(seen)` holds."""
    seen: dict[str, bytes] = {}
    async with asyncio.timeout(within):
        async for message in client.messages:
            assert isinstance(message.payload, bytes | bytearray)
            seen[str(message.topic)] = bytes(message.payload)
            if until(seen):  # type: ignore[operator]
                return seen
    raise AssertionError("unreachable")


def discovery_of(seen: dict[str, bytes]) -> dict[str, dict[str, object]]:
    return {
        topic: json.loads(payload)
        for topic, payload in seen.items()
        if topic.startswith("homeassistant/") and topic.endswith("/config") and payload
    }


def camera_config(broker: Broker, **mqtt: object) -> str:
    return (
        SMALL
        + '[video]\ncodecs = ["h264"]\n[recording]\nenabled = true\n'
        + broker.peercam_config(keepalive=5, recording_switch=True, **mqtt)
    )


def online(seen: dict[str, bytes]) -> bool:
    return any(t.endswith("/availability") and p == b"online" for t, p in seen.items())


def complete(seen: dict[str, bytes]) -> bool:
    found = discovery_of(seen)
    return len(found) >= 7 and any(t.endswith("/availability") for t in seen)


async def test_discovery_is_what_home_assistant_reads_and_survives_a_restart(
    broker: Broker, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(camera_config(broker, door_button=True))
    async with home_assistant(broker) as ha:
        await ha.subscribe("homeassistant/#")
        await ha.subscribe("peercam/#")
        seen = await collect(ha, complete)
    found = discovery_of(seen)
    components = sorted(topic.split("/")[1] for topic in found)
    assert components == sorted(
        ["event", "binary_sensor", "sensor", "sensor", "sensor", "image", "switch", "button"]
    ), components
    unique_ids = set()
    for topic, config in found.items():
        component = topic.split("/")[1]
        missing = (REQUIRED[component] | EVERY_ENTITY) - set(config)
        assert not missing, (topic, missing)
        unique_ids.add(config["unique_id"])
        device = config["device"]
        assert isinstance(device, dict) and device["identifiers"], device
        availability = config["availability_topic"]
        assert isinstance(availability, str)
        assert seen[availability] == b"online"
    assert len(unique_ids) == len(found)  # no two entities share one
    (ring,) = [c for t, c in found.items() if t.split("/")[1] == "event"]
    assert ring["device_class"] == "doorbell" and ring["event_types"] == ["ring"]
    # The same camera (same state directory) restarted: the same entities.
    daemon.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.process.wait, 30) == 0
    again = start_daemon(
        camera_config(broker, door_button=True), "--state-dir", str(daemon.state_dir)
    )
    async with home_assistant(broker) as ha:
        await ha.subscribe("homeassistant/#")
        await ha.subscribe("peercam/#")
        # A clean stop said offline; the restarted camera says online again.
        seen = await collect(
            ha,
            lambda s: complete(s) and b"online" in [s[t] for t in s if t.endswith("/availability")],
        )
    assert {c["unique_id"] for c in discovery_of(seen).values()} == unique_ids
    assert again.process.poll() is None


async def test_a_ring_is_a_doorbell_event_with_the_picture_and_call_state(
    broker: Broker, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(camera_config(broker))
    async with home_assistant(broker) as ha:
        await ha.subscribe("peercam/#")
        seen = await collect(ha, lambda s: any(t.endswith("/availability") for t in s))
        base = next(t for t in seen if t.endswith("/availability")).rsplit("/", 1)[0]
        rung = time.monotonic()
        await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST", b"")
        arrived: dict[str, float] = {}
        wall_arrived: dict[str, float] = {}

        def done(s: dict[str, bytes]) -> bool:
            for topic in (f"{base}/ring", f"{base}/picture"):
                if topic in s and topic not in arrived:
                    arrived[topic] = time.monotonic()
                    wall_arrived[topic] = time.time()
            return len(arrived) == 2 and s.get(f"{base}/call") == b"ringing"

        seen = await collect(ha, done)
    event = json.loads(seen[f"{base}/ring"])
    assert event["event_type"] == "ring" and event["origin"] == "api"
    assert seen[f"{base}/picture"][:2] == b"\xff\xd8"  # a JPEG
    latency_ms = (arrived[f"{base}/ring"] - rung) * 1000
    # From the daemon's ring (its wall clock, the same machine's) to Home Assistant's
    # client; the first figure adds the HTTPS request that rang.
    inside_ms = (wall_arrived[f"{base}/ring"] - event["at"]) * 1000
    print(f"ring -> MQTT: {latency_ms:.1f} ms from the request, {inside_ms:.1f} ms from the ring")
    assert 0 < inside_ms < latency_ms


async def test_the_recording_switch_goes_through_the_recorder(
    broker: Broker, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(camera_config(broker))
    async with home_assistant(broker) as ha:
        await ha.subscribe("peercam/#")
        seen = await collect(ha, lambda s: any(t.endswith("/recording") for t in s))
        topic = next(t for t in seen if t.endswith("/recording"))
        assert seen[topic] == b"ON"
        await ha.publish(f"{topic}/set", b"OFF")
        seen = await collect(ha, lambda s: s.get(topic) == b"OFF")
        status = await asyncio.to_thread(_status, daemon, "/api/events", "POST")
        assert status == 409  # switched off: a manual clip is refused, saying why
        await ha.publish(f"{topic}/set", b"sideways")  # neither ON nor OFF: ignored
        deadline = time.monotonic() + 10
        while "neither ON nor OFF" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()[-2000:]
            await asyncio.sleep(0.05)
    # Off stays off across a restart (the daemon's own state, not the broker's).
    daemon.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.process.wait, 30) == 0
    again = start_daemon(camera_config(broker), "--state-dir", str(daemon.state_dir))
    again.access.cert = daemon.access.cert  # the same state directory, the same certificate
    assert await asyncio.to_thread(_status, again, "/api/events", "POST") == 409
    async with home_assistant(broker) as ha:
        await ha.subscribe("peercam/#")
        await collect(ha, lambda s: s.get(topic) == b"OFF" and online(s))
        await ha.publish(f"{topic}/set", b"ON")
        await collect(ha, lambda s: s.get(topic) == b"ON")
    # On again: a manual clip is taken (or, before the first keyframe, asked again).
    assert await asyncio.to_thread(_status, again, "/api/events", "POST") in (202, 503)


def _status(daemon: DaemonProcess, path: str, method: str) -> int:
    try:
        daemon.access.urlopen(path, method, b"")
        return 202  # the only success POST /api/events answers
    except urllib.error.HTTPError as error:
        return int(error.code)


async def test_the_door_button_pulses_the_relay(
    broker: Broker, pins: MockFactory, tmp_path: Path
) -> None:
    relay = 22
    config = build_config(
        {
            "server": {"host": "127.0.0.1", "port": 0, "redirect_http": False,
                       "state_dir": str(tmp_path / "state")},
            "camera": {"source": "test", "size": "320x240", "fps": 15},
            "gpio": {"relay_pin": relay},
            "doorbell": {"door_pulse_ms": 400},
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "tls": True,
                     "ca_file": str(broker.ca), "username": USER, "password": PASSWORD,
                     "door_button": True},
        }
    )  # fmt: skip
    pin: MockPin = pins.pin(relay)
    with InProcessDaemon(config):
        async with home_assistant(broker) as ha:
            await ha.subscribe("homeassistant/button/#")
            seen = await collect(ha, lambda s: bool(discovery_of(s)))
            (button,) = discovery_of(seen).values()
            command = button["command_topic"]
            assert isinstance(command, str)
            await ha.publish(command, b"PRESS")
            deadline = time.monotonic() + 10
            while not pin.state:
                assert time.monotonic() < deadline, "the relay was not pulsed"
                await asyncio.sleep(0.02)


async def test_a_broker_restart_is_ridden_out_and_video_never_stops(
    broker: Broker, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(camera_config(broker))
    async with home_assistant(broker) as ha:
        await ha.subscribe("homeassistant/#")
        await ha.subscribe("peercam/#")
        await collect(ha, complete)
    with WatchingViewer(daemon.access) as viewer:
        killed = time.monotonic()
        broker.kill()
        await asyncio.sleep(3)
        # Rings while the broker is away neither block nor break anything.
        await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST", b"")
        before = len(broker.published())
        broker.start()  # empty: no retained discovery until the camera sends it again
        async with home_assistant(broker) as ha:
            await ha.subscribe("homeassistant/#")
            await ha.subscribe("peercam/#")
            await collect(ha, complete, within=40)
        # The ring is no retained state: whether this client saw it depends on who
        # reconnected first; the broker's own log says whether it was sent.
        deadline = time.monotonic() + 10
        while not any(t.endswith("/ring") for _, t, _ in broker.published()[before:]):
            assert time.monotonic() < deadline, "a fresh ring was lost in the outage"
            await asyncio.sleep(0.1)
        frames = [t for t in viewer.arrivals if t >= killed]
        assert viewer.alive and len(frames) > 15 * 3, len(frames)  # 15 fps through it
    assert daemon.process.poll() is None


async def test_the_last_will_marks_a_dead_camera_unavailable(
    broker: Broker, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(camera_config(broker))
    async with home_assistant(broker) as ha:
        await ha.subscribe("peercam/+/availability")
        seen = await collect(ha, lambda s: b"online" in s.values())
        daemon.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(daemon.process.wait, 10)
        # The broker publishes the will once keepalive (5 s) times 1.5 has passed.
        seen = await collect(ha, lambda s: b"offline" in s.values(), within=30)
    assert list(seen.values()) == [b"offline"]
