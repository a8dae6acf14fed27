"""`peercam firstboot`: apply the boot partition's peercam.txt to the camera.

Run once by peercam-firstboot.service, early in the first boot (before the network,
SSH and the daemon), which it then disables. The daemon's own unit runs it again with
`--if-changed` before every start, so a card edited on a PC later (a forgotten
password, a new Wi-Fi) still takes effect without a terminal.

Problems never stop the boot: each is logged (the journal) and recorded in the state
directory, where the daemon shows them on its pages; the rest still applies."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peercam.auth.store import CredentialError, open_store
from peercam.firstboot.boot_config import parse_boot_config, remove_setting
from peercam.firstboot.network import apply_hostname, apply_wifi
from peercam.firstboot.password import apply_boot_password
from peercam.firstboot.remote_login import apply_ssh
from peercam.firstboot.settings import apply_settings, is_setting
from peercam.firstboot.system_root import SystemRoot
from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

BOOT_FILE_NAME = "peercam.txt"
# Bookworm mounts the FAT partition at /boot/firmware; older systems at /boot.
BOOT_DIRS = ("/boot/firmware", "/boot")
UNIT = "peercam-firstboot.service"
SERVICE_USER = "peercam"
RECORD_NAME = "firstboot.json"
SYSTEM_KEYS = frozenset(
    {"password", "wifi_ssid", "wifi_password", "wifi_country", "hostname", "ssh", "ssh_key"}
)


@dataclass
class FirstBootResult:
    applied: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FirstBootPaths:
    boot_file: Path | None
    state_dir: Path
    config_file: Path

    @staticmethod
    def within(root: SystemRoot) -> FirstBootPaths:
        boot_file = next(
            (
                root.at(directory) / BOOT_FILE_NAME
                for directory in BOOT_DIRS
                if (root.at(directory) / BOOT_FILE_NAME).exists()
            ),
            None,
        )
        return FirstBootPaths(
            boot_file, root.at("/var/lib/peercam"), root.at("/etc/peercam/peercam.toml")
        )


def _record(state_dir: Path) -> dict[str, Any]:
    """The last run's record; empty when there is none or it cannot be read."""
    try:
        record = json.loads((state_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_problems(state_dir: Path) -> list[str]:
    """What the last first-boot run could not apply, for the daemon's pages."""
    problems = _record(state_dir).get("problems", [])
    return [str(problem) for problem in problems] if isinstance(problems, list) else []


def _recorded_digest(state_dir: Path) -> str | None:
    digest = _record(state_dir).get("applied_sha256")
    return digest if isinstance(digest, str) else None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_first_boot(
    root: SystemRoot, paths: FirstBootPaths, *, only_if_changed: bool = False
) -> FirstBootResult:
    boot_file = paths.boot_file
    if boot_file is None:
        logger.info("no %s on the boot partition: nothing to apply", BOOT_FILE_NAME)
        root.disable(UNIT)
        return FirstBootResult()
    if only_if_changed and _recorded_digest(paths.state_dir) == _digest(boot_file):
        return FirstBootResult()
    try:
        text = boot_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        result = FirstBootResult(True, [f"cannot read {boot_file}: {error}"])
        _finish(root, paths, result, digest=None)
        return result
    config = parse_boot_config(text)
    values = config.values
    problems = list(config.problems)
    for key in values:
        if key not in SYSTEM_KEYS and not is_setting(key):
            problems.append(f"line {config.lines[key]}: unknown setting {key}")
    problems += apply_hostname(values, root)
    wifi_problems = apply_wifi(values, root)
    problems += wifi_problems
    problems += apply_ssh(values, root)
    settings = {key: (config.lines[key], value) for key, value in values.items() if is_setting(key)}
    problems += apply_settings(settings, paths.config_file)
    try:
        password_problem = apply_boot_password(boot_file, open_store(paths.state_dir))
    except CredentialError as error:
        password_problem = str(error)
    if password_problem:
        problems.append(password_problem)
    if values.get("wifi_password") and not wifi_problems:
        today = datetime.date.today().isoformat()
        note = f"wifi_password = (stored on the camera {today}; removed from this card)"
        remove_setting(boot_file, "wifi_password", note)
    result = FirstBootResult(True, problems)
    _finish(root, paths, result, digest=_digest(boot_file))
    return result


def hand_config_to_service(root: SystemRoot, config_file: Path) -> None:
    """The settings page saves peercam.toml in place (a new file, renamed over the
    old): the daemon's user owns the file and its directory. The file may hold the
    TURN secret: nobody else reads it."""
    if not config_file.parent.is_dir():
        return
    root.give_to(SERVICE_USER, config_file.parent, mode=0o700)
    root.give_to(SERVICE_USER, config_file, mode=0o600)


def _finish(
    root: SystemRoot, paths: FirstBootPaths, result: FirstBootResult, digest: str | None
) -> None:
    for problem in result.problems:
        logger.warning("%s: %s", BOOT_FILE_NAME, problem)
    record = {
        "applied_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "applied_sha256": digest,
        "problems": result.problems,
    }
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(paths.state_dir / RECORD_NAME, json.dumps(record, indent=1).encode())
    # Written as root; the daemon runs as its own user and must read them.
    root.give_to(SERVICE_USER, paths.state_dir, *paths.state_dir.iterdir())
    hand_config_to_service(root, paths.config_file)
    root.disable(UNIT)
    if root.live:
        # The card's FAT is changed too (the password line): a camera is switched off
        # by pulling its plug, so nothing first boot wrote may wait in a cache.
        os.sync()
