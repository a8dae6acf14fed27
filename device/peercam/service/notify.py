"""systemd's notify protocol (sd_notify), without libsystemd.

With `Type=notify` systemd waits for READY=1 before it counts the service as started,
and with `WatchdogSec` it restarts a service whose WATCHDOG=1 pings stop. The pings
come from a task on the event loop, so a blocked loop (the failure that matters
here: every viewer freezes with it) stops them and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

logger = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: its name starts with a NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as error:
            logger.warning("cannot notify systemd (%s): %s", message, error)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")
        if self.watchdog_interval is not None and self._task is None:
            self._task = asyncio.create_task(self._ping(), name="systemd-watchdog")

    async def _ping(self) -> None:
        assert self.watchdog_interval is not None
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    async def stopping(self) -> None:
        self.send("STOPPING=1")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
