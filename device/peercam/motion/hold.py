"""Motion as a sensor that is on or off: on at the first movement, off once nothing
has moved for `hold` seconds. Home Assistant's MQTT sensor and ONVIF's motion
property both report it so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MOTION_HOLD = 10.0  # seconds the sensor stays on after the last movement


class MotionHold:
    def __init__(self, on_change: Callable[[bool], None], hold: float = MOTION_HOLD) -> None:
        self._on_change = on_change
        self._hold = hold
        self._off: asyncio.TimerHandle | None = None

    @property
    def on(self) -> bool:
        return self._off is not None

    def moved(self) -> None:
        if self._off is not None:
            self._off.cancel()
        else:
            self._on_change(True)
        self._off = asyncio.get_running_loop().call_later(self._hold, self._over)

    def _over(self) -> None:
        self._off = None
        self._on_change(False)

    def close(self) -> None:
        if self._off is not None:
            self._off.cancel()
            self._off = None
