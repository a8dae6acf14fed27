"""What Home Assistant is told about the camera: MQTT discovery messages, one per
entity, all tied to one device (Home Assistant's MQTT discovery schema, long form).

Every entity's unique id is built from the camera's own id, kept in the state
directory, so a restart (or a new IP address) finds the same entities again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from peercam import __version__
from peercam.config import Config

ON, OFF = "ON", "OFF"
ONLINE, OFFLINE = "online", "offline"
DOOR_PRESS = "PRESS"


@dataclass(frozen=True)
class Topics:
    """The camera's own topics under `<topic_prefix>/<device id>/`."""

    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def ring(self) -> str:
        return f"{self.base}/ring"

    @property
    def motion(self) -> str:
        return f"{self.base}/motion"

    @property
    def call(self) -> str:
        return f"{self.base}/call"

    @property
    def picture(self) -> str:
        return f"{self.base}/picture"

    @property
    def viewers(self) -> str:
        return f"{self.base}/viewers"

    @property
    def storage_free(self) -> str:
        return f"{self.base}/storage_free"

    @property
    def recording(self) -> str:
        return f"{self.base}/recording"

    @property
    def recording_set(self) -> str:
        return f"{self.base}/recording/set"

    @property
    def door_press(self) -> str:
        return f"{self.base}/door/press"


@dataclass(frozen=True)
class Entity:
    component: str  # Home Assistant's platform: event, binary_sensor, button...
    object_id: str
    config: dict[str, object]


def entities(config: Config, device_id: str, topics: Topics, page_url: str) -> list[Entity]:
    """Every entity the camera offers with the settings it runs with."""
    device = {
        "identifiers": [f"peercam_{device_id}"],
        "name": config.mqtt.name,
        "manufacturer": "peercam",
        "model": "peercam camera",
        "sw_version": __version__,
        **({"configuration_url": page_url} if page_url else {}),
    }
    common: dict[str, object] = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device,
        "origin": {"name": "peercam", "sw_version": __version__},
    }

    def entity(component: str, object_id: str, name: str, **settings: object) -> Entity:
        unique = f"peercam_{device_id}_{object_id}"
        return Entity(
            component,
            object_id,
            {"name": name, "unique_id": unique, **common, **settings},
        )

    found = [
        # A ring is an event, not a state: the message is never retained.
        entity(
            "event", "ring", "Ring",
            state_topic=topics.ring, event_types=["ring"], device_class="doorbell",
        ),
        entity(
            "binary_sensor", "motion", "Motion",
            state_topic=topics.motion, device_class="motion", payload_on=ON, payload_off=OFF,
        ),
        entity("sensor", "call", "Call", state_topic=topics.call, icon="mdi:phone"),
        entity(
            "image", "picture", "Last event picture",
            image_topic=topics.picture, content_type="image/jpeg",
        ),
        entity(
            "sensor", "viewers", "Viewers",
            state_topic=topics.viewers, state_class="measurement", icon="mdi:eye",
        ),
        entity(
            "sensor", "storage_free", "Storage free",
            state_topic=topics.storage_free, device_class="data_size",
            unit_of_measurement="MB", state_class="measurement", entity_category="diagnostic",
        ),
    ]  # fmt: skip
    if config.recording.enabled and config.mqtt.recording_switch:
        found.append(
            entity(
                "switch",
                "recording",
                "Recording",
                state_topic=topics.recording,
                command_topic=topics.recording_set,
                payload_on=ON,
                payload_off=OFF,
                icon="mdi:record-rec",
            )
        )
    if config.mqtt.door_button:
        found.append(
            entity(
                "button",
                "door",
                "Open door",
                command_topic=topics.door_press,
                payload_press=DOOR_PRESS,
                icon="mdi:door-open",
            )
        )
    return found


def discovery_topic(prefix: str, device_id: str, entity: Entity) -> str:
    return f"{prefix}/{entity.component}/peercam_{device_id}/{entity.object_id}/config"


def payload(entity: Entity) -> bytes:
    return json.dumps(entity.config, separators=(",", ":")).encode()
