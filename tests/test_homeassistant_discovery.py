"""Discovery messages on their own: what each entity offers follows the settings, and
ids are built from the camera's id alone (so they survive restarts and new addresses)."""

from __future__ import annotations

import json

from peercam.config import build_config
from peercam.homeassistant import discovery
from peercam.homeassistant.discovery import Topics


def build(**mqtt: object) -> list[discovery.Entity]:
    config = build_config(
        {"mqtt": {"enabled": True, "host": "broker", **mqtt}, "recording": {"enabled": False}}
    )
    return discovery.entities(config, "a1b2c3", Topics("peercam/a1b2c3"), "")


def test_the_door_button_and_the_recording_switch_appear_only_when_configured() -> None:
    assert {e.object_id for e in build()} == {
        "ring", "motion", "call", "picture", "viewers", "storage_free",
    }  # fmt: skip
    assert "door" in {e.object_id for e in build(door_button=True)}

    def switches(**mqtt: object) -> list[object]:
        config = build_config(
            {"mqtt": {"enabled": True, "host": "b", **mqtt}, "recording": {"enabled": True}}
        )
        entities = discovery.entities(config, "x", Topics("p/x"), "")
        return [e.config["command_topic"] for e in entities if e.component == "switch"]

    # Anyone on the broker could silence the camera with it: only when asked for.
    assert switches() == []
    assert switches(recording_switch=True) == ["p/x/recording/set"]


def test_ids_and_topics_come_from_the_camera_id_and_the_prefixes() -> None:
    entities = build(discovery_prefix="ha")
    ring = next(e for e in entities if e.object_id == "ring")
    assert discovery.discovery_topic("ha", "a1b2c3", ring) == "ha/event/peercam_a1b2c3/ring/config"
    decoded = json.loads(discovery.payload(ring))
    assert decoded["unique_id"] == "peercam_a1b2c3_ring"
    assert decoded["state_topic"] == "peercam/a1b2c3/ring"
    assert decoded["device"]["identifiers"] == ["peercam_a1b2c3"]
    assert "configuration_url" not in decoded["device"]  # no address known to give
    assert len({e.config["unique_id"] for e in entities}) == len(entities)
