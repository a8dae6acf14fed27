"""peercam's CPU per extra viewer against another system's, the two measured in turns.

On a virtual machine both systems' per-viewer figures moved by 2-3x between runs an
hour apart (stop 42: peercam 0.18-0.68 % of a core, Janus 0.37-0.61, same code), more
than the difference the comparison is read for. A sweep of each system once, minutes
apart, compares two states of the machine as much as two systems. Here the two take
turns, a short sweep each, the order swapped every round (ABBA): slow drift falls on
both sides of each round alike, and every round gives a ratio of its own, so the
spread of the ratios says how far one run's ratio can be trusted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from bench.cpu_per_viewer import SystemRun, measure
from bench.systems import Running


@dataclass
class Round:
    number: int
    first: str  # which system was measured first in this round
    ours: SystemRun
    theirs: SystemRun

    def ratio(self, relay_only: bool = False) -> float:
        """peercam's slope over the other's. NaN where either has none, or where the
        other's is within two standard errors of nothing: a ratio to a slope the
        windows' scatter could have made is no figure (a short window's can be 0.00)."""
        mine = self.ours.per_extra_viewer(relay_only)
        other = self.theirs.per_extra_viewer(relay_only)
        error = self.theirs.slope_error(relay_only)
        if (
            math.isnan(mine)
            or math.isnan(other)
            or other <= (0 if math.isnan(error) else 2 * error)
        ):
            return math.nan
        return mine / other


@dataclass
class Turns:
    mode: str  # "WxH@fps"
    ours: str
    theirs: str
    rounds: list[Round]

    def ratios(self, relay_only: bool = False) -> list[float]:
        return [r.ratio(relay_only) for r in self.rounds]

    def worst(self, relay_only: bool = False) -> float:
        """The highest ratio of any round: the one a claim must hold for. NaN if a
        round had none, since a round that measured nothing cannot be left out."""
        ratios = self.ratios(relay_only)
        if not ratios or any(math.isnan(r) for r in ratios):
            return math.nan
        return max(ratios)

    def median(self, relay_only: bool = False) -> float:
        ratios = [r for r in self.ratios(relay_only) if not math.isnan(r)]
        return statistics.median(ratios) if ratios else math.nan


def in_turns(
    start: Callable[[str], AbstractContextManager[Running]],
    ours: str,
    theirs: str,
    mode: str,
    rounds: int,
    counts: list[int],
    window: float,
    fps: int,
) -> Turns:
    """`rounds` rounds of one sweep over `counts` for each of `ours` and `theirs`,
    started afresh by `start(system)` every time, in the order AB, BA, AB, ..."""
    done = []
    for number in range(1, rounds + 1):
        order = (ours, theirs) if number % 2 else (theirs, ours)
        runs: dict[str, SystemRun] = {}
        for system in order:
            print(f"  round {number} of {rounds} at {mode}: {system}", flush=True)
            with start(system) as running:
                runs[system] = measure(running, counts, window, fps=fps)
        done.append(Round(number, order[0], runs[ours], runs[theirs]))
    return Turns(mode, ours, theirs, done)
