"""A regular (non-editable) install must carry the whole daemon and its page.

The package list in pyproject.toml is written by hand (the page lives outside
device/), so a new sub-package missing from it would only fail on a real install,
such as the SD card image's. This builds the wheel and looks inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_module_and_the_viewer_page(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(tmp_path.glob("peercam-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = ROOT / "device"
    expected = {str(p.relative_to(sources)) for p in sources.rglob("*.py")}
    assert expected and expected <= names, sorted(expected - names)
    # Every file of the page: the installable app's icons and manifest too.
    pages = [p.name for p in (ROOT / "web").iterdir() if p.is_file()]
    assert {"index.html", "sw.js", "manifest.webmanifest", "icon-192.png"} <= set(pages)
    for page in pages:
        assert f"peercam/webroot/{page}" in names, page
