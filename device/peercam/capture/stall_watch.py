"""Restarts a capture driver that hangs.

A driver that fails raises, and its thread reopens the device by itself. One that
hangs (a camera that stops answering, a blocked read) raises nothing: every viewer
would just see a frozen picture. This watch notices an open device that has
delivered nothing for `timeout` seconds and restarts its driver in a new thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from peercam.capture.driver_thread import DriverThread
from peercam.metrics import Metrics

logger = logging.getLogger(__name__)


class StallWatch:
    def __init__(
        self,
        drivers: Callable[[], Iterable[DriverThread[object]]],
        timeout: float,
        metrics: Metrics,
    ) -> None:
        """`drivers`: asked each round (a camera changed from the settings page is a
        new driver)."""
        self._drivers = drivers
        self._timeout = timeout
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="stall-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(0.5, self._timeout / 4))
            now = time.monotonic()
            for driver in self._drivers():
                silent = driver.stalled_for(now)
                if driver.running and silent > self._timeout:
                    logger.warning(
                        "%s delivered nothing for %.1f s; restarting its driver",
                        driver.label,
                        silent,
                    )
                    self._metrics.driver_restarts.labels(driver.label).inc()
                    driver.abandon_thread()
