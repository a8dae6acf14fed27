"""The image recipe's promise for the Raspberry Pi OS base: when Raspberry Pi's
archive or its key is missing, it says exactly what, and builds nothing. (The whole
build and a boot under qemu are `make image-test`: half an hour, not part of
`make test`.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent.parent / "image-build" / "build.sh"


@pytest.mark.skipif(os.geteuid() != 0, reason="build.sh runs as root (it checks that first)")
def test_the_raspberry_pi_os_base_names_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(BUILD), "--base", "raspios", "--out", str(tmp_path)],
        env={**os.environ, "RPI_KEYRING": str(tmp_path / "no-such-keyring.gpg")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "cannot build the Raspberry Pi OS base" in result.stderr
    assert f"its signing key {tmp_path / 'no-such-keyring.gpg'}" in result.stderr
    for package in ("linux-image-rpi-2712", "python3-picamera2", "libcamera-ipa"):
        assert package in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing built
