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
    """The units as installed side by side (OnFailure= names another), but naming this
    checkout's peercam (verify checks that ExecStart= exists)."""
    peercam = str(Path(sys.executable).parent / "peercam")
    for source in UNITS.iterdir():
        text = source.read_text().replace("/usr/bin/peercam", peercam)
        (tmp_path / source.name).write_text(text.replace("/opt/peercam/bin/peercam", peercam))
    return tmp_path / name


@pytest.mark.parametrize(
    "name",
    [
        "peercam.service",
        "peercam-firstboot.service",
        "peercam-update.service",
        "peercam-update-recover.service",
        "peercam-update-trial.service",
    ],
)
def test_the_units_verify(tmp_path: Path, name: str) -> None:
    unit = installed_copy(tmp_path, name)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert name not in result.stderr, result.stderr  # no warnings about it


def test_first_boot_runs_early_and_once() -> None:
    text = (UNITS / "peercam-firstboot.service").read_text()
    assert "ExecStart=/usr/bin/peercam firstboot\n" in text
    assert "Type=oneshot" in text and "WantedBy=multi-user.target" in text
    # Wi-Fi and hostname are written before the network and the daemon start.
    for unit in ("network-pre.target", "wpa_supplicant@wlan0.service", "peercam.service"):
        assert re.search(rf"^Before=.*{re.escape(unit)}", text, re.M), unit
    # The daemon re-applies an edited card, and starts whatever that meets.
    service = (UNITS / "peercam.service").read_text()
    assert "ExecStartPre=-+/usr/bin/peercam firstboot --if-changed" in service


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
                    "ReadWritePaths=/etc/peercam",
                    "SupplementaryGroups=video audio gpio", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "RestrictAddressFamilies=", "DevicePolicy=closed"):  # fmt: skip
        assert setting in text, setting


def test_a_daemon_systemd_gives_up_on_undoes_a_recent_update() -> None:
    service = (UNITS / "peercam.service").read_text()
    trial = re.search(r"^OnFailure=(\S+)$", service, re.M)
    assert trial is not None and (UNITS / trial[1]).exists()
    assert (
        "ExecStart=/opt/peercam/bin/peercam update --after-failure"
        in (UNITS / trial[1]).read_text()
    )
    installer = (UNITS.parent / "scripts" / "install.sh").read_text()
    assert f'"$HERE/systemd/{trial[1]}"' in installer
