"""What every output is: a named consumer of the shared streams or events, built from
the config by its own module, started and stopped by the daemon.

An output takes a stream with `async with pipeline.stream(codec)`, which also stops
encoders it leaves unneeded. A new destination (RTSP, MQTT, a phone call) is a module
with a `build(context) -> list[Output]` function and one line in outputs/catalog.py.
An output that also answers HTTP has a `routes()` method (http/app.py's RouteGroup):
the daemon serves them, under the access table in http/access.py. One that takes
some settings while running has `apply_settings(config)` (LiveSettings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from peercam.auth.authenticator import Authenticator
from peercam.config import Config
from peercam.doorbell.call import Doorbell
from peercam.events import EventBus
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline
from peercam.rtc.registry import SessionRegistry


class Output(Protocol):
    @property
    def name(self) -> str:
        """Says which output this is in the log: its kind and destination."""
        ...

    async def start(self) -> None:
        """Begin; must not wait on the network or a peer (run that in a task)."""
        ...

    async def stop(self) -> None:
        """End every task and release every stream and resource the output holds;
        called after a start that failed part-way too (and then releases what it did
        take)."""
        ...


@runtime_checkable
class LiveSettings(Protocol):
    def apply_settings(self, config: Config) -> None:
        """Take the settings settings/impact.py names live from `config` now,
        without stopping (called on the event loop)."""
        ...


@dataclass(frozen=True)
class OutputContext:
    """What an output may be built from."""

    config: Config
    pipeline: MediaPipeline
    events: EventBus
    # An output's own counters go in the daemon's registry, so /metrics shows them.
    metrics: Metrics = field(default_factory=Metrics)
    # Outputs that act on the door (ring, open it, answer) go through the same call
    # logic as the page; None where there is no doorbell (unit tests).
    doorbell: Doorbell | None = None
    # Outputs that keep something per user (push subscriptions) hear of logouts and
    # changed or removed accounts from it; None in unit tests.
    accounts: Authenticator | None = None
    # Outputs that open viewer sessions by other signaling than WHEP (remote access)
    # open them here, under the same limits; None in unit tests.
    sessions: SessionRegistry | None = None


OutputFactory = Callable[[OutputContext], list[Output]]
