"""The shell scripts that install peercam and build its image: shellcheck finds
quoting and portability mistakes that only show on someone else's machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    "scripts/install.sh",
    "scripts/ensure-debian-packages.sh",
    "image-build/build.sh",
    "image-build/customize.sh",
    "image-build/initramfs-once.sh",
    "image-build/rootfs/usr/local/sbin/peercam-growroot",
]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script: str) -> None:
    result = subprocess.run(
        ["shellcheck", "--severity=warning", str(ROOT / script)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
