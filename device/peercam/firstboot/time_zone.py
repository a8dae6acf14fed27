"""The system's time zone from peercam.toml's `server.time_zone` (which the settings
page writes): /etc/localtime and /etc/timezone, as Debian's tzdata keeps them. Run
as root by `peercam firstboot` before every start of the daemon, which cannot
change the system itself; the daemon's own clock follows the setting at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from peercam.config import ConfigError
from peercam.firstboot.system_root import SystemRoot
from peercam.settings.config_file import ConfigFile

logger = logging.getLogger(__name__)


def configured_zone(config_file: Path) -> str | None:
    try:
        data = ConfigFile(config_file).read().unwrap()
    except ConfigError:
        return None  # the daemon says what is wrong with the file
    server = data.get("server")
    zone = server.get("time_zone") if isinstance(server, dict) else None
    return zone if isinstance(zone, str) else None


def apply_time_zone(root: SystemRoot, config_file: Path) -> str | None:
    """Set the system's zone to the configured one; returns the zone set, if any."""
    zone = configured_zone(config_file)
    if zone is None:
        return None
    target = f"/usr/share/zoneinfo/{zone}"
    if ".." in zone.split("/") or not root.at(target).is_file():
        logger.warning("time zone %r: no %s on this system; left as it is", zone, target)
        return None
    localtime = root.at("/etc/localtime")
    if localtime.is_symlink() and os.readlink(localtime) == target:
        return zone
    temporary = localtime.with_name(".localtime.peercam")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    temporary.replace(localtime)
    root.at("/etc/timezone").write_text(zone + "\n")
    logger.info("time zone set to %s", zone)
    return zone
