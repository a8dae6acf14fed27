"""The systemd units: they pass `systemd-analyze verify`, and the service's
hardening rates 3.0 or lower ("OK") in `systemd-analyze security`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def installed_copy(tmp_path: Path, name: str) -> Path:
    """The unit as installed, but naming this checkout's peercam (verify checks that
    ExecStart= exists)."""
    peercam = Path(sys.executable).parent / "peercam"
    unit = tmp_path / name
    unit.write_text((UNITS / name).read_text().replace("/usr/bin/peercam", str(peercam)))
    return unit


def test_the_service_verifies(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path, "peercam.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "peercam.service" not in result.stderr, result.stderr  # no warnings about it


def test_the_service_is_hardened(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path, "peercam.service")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for peercam.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    print(f"systemd-analyze security: {match[1]} {match[2]}")
    assert float(match[1]) <= 3.0, result.stdout
    text = (UNITS / "peercam.service").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=",
                    "StateDirectory=peercam", "ConfigurationDirectory=peercam",
                    "SupplementaryGroups=video audio gpio", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "RestrictAddressFamilies=", "DevicePolicy=closed"):  # fmt: skip
        assert setting in text, setting
