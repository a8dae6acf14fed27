"""Where benchmark figures go: printed, and kept in bench/results/ (only the published
run, latest.md and its charts, is committed)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def publish(filename: str, lines: list[str]) -> None:
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / filename).write_text(report)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank `p`th percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
