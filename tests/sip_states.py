"""What a SIP registration or call went through, told by its callback, and a wait
for the state it is to reach (the SIP tests' common listener)."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, Protocol, TypeVar


class HasState(Protocol):
    @property
    def state(self) -> Any: ...


Told = TypeVar("Told", bound=HasState)


class StateLog(list[Told], Generic[Told]):
    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def add(self, told: Told) -> None:
        self.append(told)
        self.changed.set()

    async def reach(self, state: object) -> Told:
        """Until the latest told is in `state`: that one."""
        while not self or self[-1].state != state:
            self.changed.clear()
            await self.changed.wait()
        return self[-1]
