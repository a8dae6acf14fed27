"""The devices paired with this camera: one private JSON file in the state directory.

    {"version": 1, "devices": [{"id": "<hex, 32>", "name": "Anna's phone",
      "public_key": "<base64url, uncompressed P-256 point>",
      "paired_at": 1764740000.0, "last_seen": 1764741234.5 | null, "user": "anna"}]}

Every method is synchronous. Those that change the store write the whole file
(write_private: owner-only, atomic, fsynced), so the caller runs them in a thread
off the event loop; `public_key` and `get` only read memory and are cheap enough for
every message. `seen` writes at most once per `SEEN_WRITE_INTERVAL` per device, since
an SD card should not be written for every signaling message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peercam.remote.keys import b64url, from_b64url, key_id, parse_public
from peercam.remote.refused import Refused
from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

FILE_NAME = "remote-devices.json"
FORMAT_VERSION = 1
SEEN_WRITE_INTERVAL = 600.0
MAX_NAME = 64


@dataclass(frozen=True)
class PairedDevice:
    id: str
    name: str
    public_key: bytes
    paired_at: float
    last_seen: float | None = None
    # The account it acts as (the admin who paired it, or the user they chose):
    # what it may do is that account's role, looked up at each command.
    user: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "public_key": b64url(self.public_key),
            "paired_at": self.paired_at,
            "last_seen": self.last_seen,
            "user": self.user,
        }

    @classmethod
    def from_json(cls, entry: Any) -> PairedDevice:
        if not isinstance(entry, dict):
            raise ValueError("not an object")
        raw = from_b64url(str(entry["public_key"]), "public_key")
        parse_public(raw)
        device = cls(
            id=str(entry["id"]),
            name=str(entry["name"]),
            public_key=raw,
            paired_at=float(entry["paired_at"]),
            last_seen=None if entry.get("last_seen") is None else float(entry["last_seen"]),
            user=str(entry.get("user", "")),
        )
        # The id is the key's hash: an edited file cannot give one device another's id.
        if device.id != key_id(raw).hex():
            raise ValueError("id does not match the public key")
        return device


def clean_name(name: str) -> str:
    """What the page shows: printable, one line, bounded."""
    printable = "".join(ch for ch in name if ch.isprintable()).strip()
    return printable[:MAX_NAME] or "unnamed device"


class DeviceStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        # Callers run methods from worker threads; two pairings at once must not lose one.
        self._lock = threading.Lock()
        self._devices: dict[str, PairedDevice] = {}
        self._written_seen: dict[str, float | None] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_bytes())
            entries = data["devices"] if isinstance(data, dict) else None
            if not isinstance(entries, list) or data.get("version") != FORMAT_VERSION:
                raise ValueError("not a version 1 device list")
        except (OSError, ValueError, KeyError) as error:
            # Refusing to start would lock the owner out of the LAN page too; an empty
            # list only means phones pair again.
            logger.error("ignoring the paired devices in %s: %s", self.path, error)
            return
        for entry in entries:
            try:
                device = PairedDevice.from_json(entry)
            except (KeyError, TypeError, ValueError, Refused) as error:
                logger.error("ignoring a paired device in %s: %s", self.path, error)
                continue
            self._devices[device.id] = device
            self._written_seen[device.id] = device.last_seen

    def _write(self) -> None:
        data = {
            "version": FORMAT_VERSION,
            "devices": [device.to_json() for device in self._devices.values()],
        }
        write_private(self.path, json.dumps(data, indent=1).encode())
        self._written_seen = {id_: device.last_seen for id_, device in self._devices.items()}

    def devices(self) -> list[PairedDevice]:
        with self._lock:
            return sorted(self._devices.values(), key=lambda device: device.paired_at)

    def get(self, device_id: str) -> PairedDevice | None:
        return self._devices.get(device_id)

    def public_key(self, device_id: str) -> bytes | None:
        device = self._devices.get(device_id)
        return None if device is None else device.public_key

    def add(self, name: str, public_key: bytes, now: float, user: str = "") -> PairedDevice:
        """Pair a device (Refused for a key that is not P-256); pairing the same key
        again keeps its first date and takes the new name. Writes the file."""
        parse_public(public_key)
        device_id = key_id(public_key).hex()
        with self._lock:
            previous = self._devices.get(device_id)
            device = PairedDevice(
                id=device_id,
                name=clean_name(name),
                public_key=public_key,
                paired_at=previous.paired_at if previous else now,
                last_seen=previous.last_seen if previous else None,
                user=user,
            )
            self._devices[device_id] = device
            self._write()
        logger.info("paired device %s (%s)", device.name, device_id)
        return device

    def remove(self, device_id: str) -> bool:
        """Unpair: from now on its messages are refused. Writes the file."""
        with self._lock:
            device = self._devices.pop(device_id, None)
            if device is None:
                return False
            self._write()
        logger.info("unpaired device %s (%s)", device.name, device_id)
        return True

    def seen(self, device_id: str, now: float) -> None:
        """Note a message from the device; writes only when the last written time is
        older than SEEN_WRITE_INTERVAL."""
        with self._lock:
            device = self._devices.get(device_id)
            if device is None:
                return
            self._devices[device_id] = dataclasses.replace(device, last_seen=now)
            written = self._written_seen.get(device_id)
            if written is None or now - written >= SEEN_WRITE_INTERVAL:
                self._write()
