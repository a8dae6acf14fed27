"""The doorbell's pins through gpiozero: button, PIR sensor, status LED, door relay.

gpiozero calls back from its own threads; every callback is handed to the event
loop. Without a GPIO configured (or without a pin factory, off a Pi) the doorbell
still works from the page, the API and the command line, with no lights.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from peercam.config import GpioConfig

logger = logging.getLogger(__name__)


class DoorbellHardware:
    """Outputs the call state drives; this base class has none (no GPIO)."""

    def show_idle(self) -> None: ...

    def show_ringing(self) -> None: ...

    def show_call(self) -> None: ...

    def pulse_door(self, seconds: float) -> bool:
        return False

    def close(self) -> None: ...


class GpioDoorbell(DoorbellHardware):
    def __init__(
        self,
        config: GpioConfig,
        on_ring: Callable[[str], None],
        on_motion: Callable[[], None],
    ) -> None:
        import gpiozero

        loop = asyncio.get_running_loop()
        self._devices: list[Any] = []
        self._led: Any = None
        self._relay: Any = None
        if config.doorbell_pin is not None:
            button = gpiozero.Button(
                config.doorbell_pin,
                pull_up=config.doorbell_pull_up,
                bounce_time=config.debounce_ms / 1000 if config.debounce_ms else None,
            )
            button.when_pressed = lambda: loop.call_soon_threadsafe(on_ring, "button")
            self._devices.append(button)
        if config.motion_pin is not None:
            sensor = gpiozero.MotionSensor(config.motion_pin)
            sensor.when_motion = lambda: loop.call_soon_threadsafe(on_motion)
            self._devices.append(sensor)
        if config.led_pin is not None:
            self._led = gpiozero.LED(config.led_pin)
            self._devices.append(self._led)
        if config.relay_pin is not None:
            self._relay = gpiozero.DigitalOutputDevice(
                config.relay_pin, active_high=config.relay_active_high, initial_value=False
            )
            self._devices.append(self._relay)

    def show_idle(self) -> None:
        if self._led is not None:
            self._led.off()

    def show_ringing(self) -> None:
        if self._led is not None:
            self._led.blink(on_time=0.25, off_time=0.25, background=True)

    def show_call(self) -> None:
        if self._led is not None:
            self._led.on()

    def pulse_door(self, seconds: float) -> bool:
        if self._relay is None:
            return False
        # gpiozero times the pulse in its own thread; the event loop never waits on it.
        self._relay.blink(on_time=seconds, off_time=0, n=1, background=True)
        return True

    def close(self) -> None:
        for device in self._devices:
            device.close()


def open_hardware(
    config: GpioConfig, on_ring: Callable[[str], None], on_motion: Callable[[], None]
) -> DoorbellHardware:
    if not config.in_use:
        return DoorbellHardware()
    try:
        return GpioDoorbell(config, on_ring, on_motion)
    except Exception as error:  # gpiozero's BadPinFactory, a pin in use, no permission
        logger.error("GPIO unavailable (%s); the doorbell runs without its pins", error)
        return DoorbellHardware()
