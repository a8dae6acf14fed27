"""How the camera is connected, for its owner (the first-run page): each network
interface that is up, its addresses, and for Wi-Fi the network's name and signal.

Read, never changed: Wi-Fi is set on the SD card's peercam.txt (first boot), since
a page cannot be reached to fix a Wi-Fi setting that cut it off. Addresses come
from iproute2's JSON (`ip -j address`), the signal from the kernel's
/proc/net/wireless, the network's name from wireless-tools' `iwgetid` where it is
installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WIRELESS = Path("/proc/net/wireless")


@dataclass(frozen=True)
class Wireless:
    network: str | None  # the SSID, when iwgetid can tell
    signal_dbm: float | None


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: list[str]
    wireless: Wireless | None


def wireless_signals(text: str) -> dict[str, float | None]:
    """Interface → signal level (dBm) from /proc/net/wireless's table."""
    found: dict[str, float | None] = {}
    for line in text.splitlines()[2:]:  # two header lines
        name, _, rest = line.partition(":")
        fields = rest.split()
        try:
            level: float | None = float(fields[2].rstrip("."))
        except (IndexError, ValueError):
            level = None
        found[name.strip()] = level
    return found


def _network_of(interface: str) -> str | None:
    program = shutil.which("iwgetid")
    if program is None:
        return None
    try:
        result = subprocess.run(
            [program, "-r", interface], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def network_status() -> list[Interface]:
    """Interfaces that are up, loopback left out; blocking (run it in a thread)."""
    try:
        result = subprocess.run(
            ["ip", "-j", "address", "show", "up"], capture_output=True, text=True, timeout=5
        )
        links = json.loads(result.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    try:
        signals = wireless_signals(WIRELESS.read_text())
    except OSError:
        signals = {}
    found = []
    for link in links:
        name = str(link.get("ifname", ""))
        if not name or "LOOPBACK" in link.get("flags", []):
            continue
        addresses = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") == "global" and "local" in a
        ]
        wireless = Wireless(_network_of(name), signals[name]) if name in signals else None
        if addresses or wireless is not None:
            found.append(Interface(name, addresses, wireless))
    return found
