"""What remote signaling needs from a rendezvous, whatever carries it: an MQTT broker
today (mqtt_link.py); a plain WebSocket relay would be another implementation.

The link is outbound only and kept up by itself (reconnecting with backoff); nothing
else in the daemon waits on it. Messages are opaque sealed bytes: the rendezvous is
trusted with nothing but delivery, and even that only best-effort.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

Deliver = Callable[[bytes], Awaitable[None]]


class LinkDown(Exception):
    """The rendezvous is not reachable now; the message was not sent."""


class RendezvousLink(Protocol):
    # Set while linked; a test or the page's status reads it.
    connected: asyncio.Event

    def start(self, deliver: Deliver) -> None:
        """Link in the background; `deliver` gets each message sent to the camera."""
        ...

    async def send(self, device_id: str, data: bytes) -> None:
        """Send to one paired device; raises LinkDown when not linked."""
        ...

    async def stop(self) -> None: ...
