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
    "scripts/require-picamera2.sh",
    "scripts/ensure-debian-packages.sh",
    "image-build/build.sh",
    "image-build/customize.sh",
    "image-build/initramfs-once.sh",
    "image-build/rootfs/usr/local/sbin/peercam-growdata",
    "image-build/rootfs/usr/local/sbin/peercam-root",
]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script: str) -> None:
    result = subprocess.run(
        ["shellcheck", "--severity=warning", str(ROOT / script)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("installed", "after_upgrade", "status", "upgraded"),
    [
        ("", "", 0, False),  # no picamera2 (plain Debian): nothing to check
        ("0.3.38-1", "0.3.38-1", 0, False),
        ("0.3.31-1", "0.3.34-1", 0, True),
        ("0.3.31-1", "0.3.31-1", 1, True),
    ],
)
def test_install_requires_a_picamera2_that_can_force_keyframes(
    tmp_path: Path, installed: str, after_upgrade: str, status: int, upgraded: bool
) -> None:
    # dpkg-query and apt-get answer as Raspberry Pi OS's would; dpkg itself compares.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "version"
    state.write_text(installed)
    (bin_dir / "dpkg-query").write_text(f"#!/bin/sh\n[ -s {state} ] || exit 1\ncat {state}\n")
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path / "apt.log"}\nprintf {after_upgrade} > {state}\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    result = subprocess.run(
        [str(ROOT / "scripts/require-picamera2.sh")],
        capture_output=True, text=True, timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    assert (tmp_path / "apt.log").exists() == upgraded
    if status:
        assert "needs python3-picamera2 0.3.32 or later; this system has 0.3.31-1" in result.stderr
