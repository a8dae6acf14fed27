"""The benchmark's two charts, as PNG files next to the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.cpu_per_viewer import SystemRun
from bench.glass_to_glass import Latency


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on a benchmark machine
    import matplotlib.pyplot as pyplot

    return pyplot


def cpu_vs_viewers(runs: list[SystemRun], path: Path, cores: int) -> None:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for run in runs:
        xs = [s.viewers for s in run.samples]
        ys = [s.cpu_percent for s in run.samples]
        axes.plot(xs, ys, marker="o", label=run.name)
        below = [s for s in run.samples if s.slowest_viewer_fps < 29]
        if below:
            axes.plot(
                [s.viewers for s in below],
                [s.cpu_percent for s in below],
                linestyle="none",
                marker="x",
                markersize=11,
                color="black",
            )
    axes.axhline(100 * cores, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("viewers (x: slowest viewer below 29 fps)")
    axes.set_ylabel("CPU, % of one core")
    axes.set_title("Server CPU as viewers are added (640x480@30 H.264)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def latency_histogram(trials: list[Latency], path: Path) -> None:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    upper = max((max(t.shown) for t in trials if t.shown), default=100.0)
    bins = [float(b) for b in range(0, int(upper) + 3, 2)]
    for trial in trials:
        if trial.shown:
            axes.hist(trial.shown, bins=bins, histtype="step", linewidth=1.5, label=trial.system)
    axes.set_xlabel("capture → shown in Chromium, ms")
    axes.set_ylabel("frames")
    axes.set_title(f"Glass-to-glass latency, {trials[0].size}@30 {trials[0].codec}, one viewer")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
