"""The board's model as its device tree names it ("Raspberry Pi 4 Model B Rev 1.4")."""

from __future__ import annotations

from pathlib import Path


def board_model() -> str | None:
    """None off a device-tree board (a PC). Blocking (a file)."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_bytes().rstrip(b"\x00").decode(errors="replace")
        except OSError:
            continue
    return None
