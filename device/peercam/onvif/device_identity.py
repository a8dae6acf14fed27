"""What the camera says about itself over ONVIF: maker, model, serial number, its
discovery address, and its network interfaces (Home Assistant makes the camera's
unique id from the MAC address of the first enabled one, or the discovery scope
`mac` when given, which is the same)."""

from __future__ import annotations

import fcntl
import ipaddress
import platform
import socket
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from peercam import __version__
from peercam.service.board_model import board_model
from peercam.service.device_id import device_id

MANUFACTURER = "peercam"
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_ARPHRD_ETHER = "1"  # /sys/class/net/*/type of Ethernet and Wi-Fi alike
# Our own namespace for uuid5: the same device id gives the same address forever.
_NAMESPACE = uuid.UUID("6f1c1f5e-2a0d-4f4b-9d7e-0c5e6b1a9a51")


@dataclass(frozen=True)
class NetworkInterface:
    name: str
    mac: str  # "dc:a6:32:01:02:03"
    ipv4: str | None
    prefix_length: int
    up: bool


@dataclass(frozen=True)
class DeviceIdentity:
    name: str
    model: str
    firmware: str
    serial: str
    endpoint_uuid: str  # WS-Discovery's endpoint reference: urn:uuid:<this>
    time_zone: str  # POSIX TZ, as ONVIF's TimeZone/TZ wants it: "CET-1CEST,M3.5.0,M10.5.0/3"

    @property
    def endpoint_reference(self) -> str:
        return f"urn:uuid:{self.endpoint_uuid}"


def read_identity(state_dir: Path, name: str) -> DeviceIdentity:
    """Blocking (files): call from a thread."""
    serial = device_id(state_dir)
    return DeviceIdentity(
        name=name,
        model=board_model() or f"{platform.machine()} Linux",
        firmware=__version__,
        serial=serial,
        endpoint_uuid=str(uuid.uuid5(_NAMESPACE, serial)),
        time_zone=_posix_time_zone(),
    )


def _posix_time_zone() -> str:
    """The POSIX rule a TZif file (version 2 and on) ends with; UTC without one."""
    try:
        data = Path("/etc/localtime").read_bytes()
    except OSError:
        return "UTC0"
    if data[:4] != b"TZif" or data[4:5] in (b"\0", b""):
        return "UTC0"
    footer = data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("ascii", "replace")
    return footer if footer and footer.isprintable() else "UTC0"


def network_interfaces() -> list[NetworkInterface]:
    """The board's own Ethernet and Wi-Fi interfaces (those with a device behind
    them: not bridges, veths or docker0, whose MAC addresses are made up), with their
    IPv4 address where they have one; every Ethernet-like one where there is no such
    (a container). Blocking (sysfs, ioctls): call from a thread."""
    found: list[tuple[bool, NetworkInterface]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            base = Path("/sys/class/net") / name
            try:
                if (base / "type").read_text().strip() != _ARPHRD_ETHER:
                    continue
                mac = (base / "address").read_text().strip()
                up = (base / "operstate").read_text().strip() in ("up", "unknown")
            except OSError:
                continue
            address, prefix = _ipv4(probe, name)
            physical = (base / "device").exists()
            found.append((physical, NetworkInterface(name, mac, address, prefix, up)))
    physical_ones = [found_one for is_physical, found_one in found if is_physical]
    return physical_ones or [found_one for _, found_one in found]


def _ipv4(probe: socket.socket, name: str) -> tuple[str | None, int]:
    request = struct.pack("256s", name.encode()[:15])
    try:
        address = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)[20:24])
        mask = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), _SIOCGIFNETMASK, request)[20:24])
    except OSError:
        return None, 0  # no IPv4 address on it
    return address, ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
