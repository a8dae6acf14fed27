"""Where benchmark figures go: printed, and kept in bench/results/ (not committed)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def publish(filename: str, lines: list[str]) -> None:
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / filename).write_text(report)
