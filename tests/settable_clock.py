"""A wall clock the test sets: time-bounded checks (offers, replay windows) tested
without waiting."""

from __future__ import annotations

from dataclasses import dataclass

T0 = 1_764_740_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now
