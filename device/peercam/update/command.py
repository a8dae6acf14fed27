"""`peercam update`: install a signed update bundle, keep it or roll back."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from peercam.config import Config

if TYPE_CHECKING:
    from peercam.update.status import UpdateStatus
    from peercam.update.updater import Updater

# The daemon's settings when run by systemd (systemd/peercam.service).
SYSTEM_CONFIG = Path("/etc/peercam/peercam.toml")


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = commands.add_parser(
        "update", help="install a signed update bundle; rolled back if it does not come up"
    )
    update.add_argument("bundle", nargs="?", type=Path, help="the .peercam-update file")
    update.add_argument(
        "--config", type=Path, help=f"TOML config file (default {SYSTEM_CONFIG} if it exists)"
    )
    update.add_argument(
        "--state-dir", help="the daemon's state directory (default /var/lib/peercam)"
    )
    what = update.add_mutually_exclusive_group()
    what.add_argument(
        "--uploaded", action="store_true", help="the bundle uploaded on the page (systemd runs it)"
    )
    what.add_argument(
        "--recover", action="store_true", help="at boot: finish an update a power cut stopped"
    )
    what.add_argument("--status", action="store_true", help="what the last update did")
    update.add_argument("--unit", default="peercam.service", help="the daemon's systemd unit")
    update.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def make_updater(config: Config, unit: str, state_dir: Path) -> Updater:
    # Here, not above: `peercam --help` and first boot need none of aiortc.
    from peercam.update.bundle import load_trusted_keys
    from peercam.update.paths import releases_dir, trusted_keys_dir
    from peercam.update.releases import ReleaseStore
    from peercam.update.self_check import check_daemon, self_check_target
    from peercam.update.service_manager import SystemdService
    from peercam.update.updater import Updater

    async def self_check(within: float) -> str:
        return await check_daemon(self_check_target(config, state_dir), within)

    return Updater(
        ReleaseStore(releases_dir()),
        load_trusted_keys(trusted_keys_dir()),
        SystemdService(unit),
        self_check,
        deadline=config.update.ready_deadline,
    )


def _print(status: UpdateStatus | None) -> None:
    print(json.dumps(None if status is None else status.to_json(), indent=1))


def run_command(config: Config, args: argparse.Namespace) -> int:
    from peercam.service.state_dir import state_directory
    from peercam.update.incoming import INCOMING_NAME, incoming_directory
    from peercam.update.updater import UpdateBusy

    # The daemon's state directory from the command line or systemd's default, never
    # from peercam.toml: root reads in it, and the daemon may write that file.
    state_dir = Path(args.state_dir) if args.state_dir else state_directory(None)
    updater = make_updater(config, args.unit, state_dir)
    if args.status:
        _print(updater.last_status())
        return 0
    if os.geteuid() != 0:
        print("peercam update: run it as root (sudo)", file=sys.stderr)
        return 2
    if args.recover:
        recovered = updater.recover()
        if recovered is not None:
            print(f"peercam update: {recovered.reason}", file=sys.stderr)
        return 0
    if args.uploaded:
        source = incoming_directory(state_dir) / INCOMING_NAME
        # Out of the service user's directory first: what root checks and installs is
        # a copy the daemon can no longer change.
        bundle = updater.store.root / "uploaded.bundle"
        try:
            _copy_without_links(source, bundle)
        except OSError as error:
            print(f"peercam update: no uploaded bundle: {error}", file=sys.stderr)
            # Whatever is there goes (a link itself, not what it names): left, it would
            # start this service again and again.
            with contextlib.suppress(OSError):
                source.unlink()
            return 1
        source.unlink(missing_ok=True)
    elif args.bundle is None:
        print("peercam update: give the bundle's file", file=sys.stderr)
        return 2
    else:
        bundle = args.bundle
    try:
        status = asyncio.run(updater.apply(bundle))
    except UpdateBusy as error:
        print(f"peercam update: {error}", file=sys.stderr)
        return 1
    finally:
        if args.uploaded:
            bundle.unlink(missing_ok=True)
    messages = {
        "kept": f"peercam update: {status.version} installed and running",
        "rolled_back": f"peercam update: {status.version} rolled back: {status.reason}",
        "refused": f"peercam update: refused: {status.reason}",
        "failed": f"peercam update: failed: {status.reason}",
    }
    print(messages.get(status.state, status.state), file=sys.stderr)
    return 0 if status.state == "kept" else 1


def _copy_without_links(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as reading:
        if not stat.S_ISREG(os.fstat(reading.fileno()).st_mode):
            raise OSError("not a regular file")
        target.unlink(missing_ok=True)
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out_fd, "wb") as writing:
            shutil.copyfileobj(reading, writing, 1 << 20)
