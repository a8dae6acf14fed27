"""`peercam update`: install a signed update bundle, keep it or roll back."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from peercam.config import Config

if TYPE_CHECKING:
    from peercam.update.status import UpdateStatus
    from peercam.update.updater import Updater

# The daemon's settings when run by systemd (systemd/peercam.service).
SYSTEM_CONFIG = Path("/etc/peercam/peercam.toml")
MAX_CONFIG_BYTES = 1 << 20


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
    what.add_argument(
        "--after-failure",
        action="store_true",
        help="systemd gave up on the daemon: undo an update kept in the last 48 h",
    )
    update.add_argument("--unit", default="peercam.service", help="the daemon's systemd unit")
    update.add_argument(
        "--allow-older", action="store_true", help="install a release older than the running one"
    )
    update.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def make_updater(config: Config, unit: str, state_dir: Path) -> Updater:
    # Here, not above: `peercam --help` and first boot need none of aiortc.
    from peercam.update.bundle import load_trusted_keys
    from peercam.update.paths import releases_dir, trusted_keys_dir
    from peercam.update.releases import ReleaseStore
    from peercam.update.self_check import check_unprivileged, self_check_target
    from peercam.update.service_manager import SystemdService
    from peercam.update.updater import Updater

    async def self_check(within: float) -> str:
        return await check_unprivileged(self_check_target(config, state_dir), within)

    return Updater(
        ReleaseStore(releases_dir()),
        load_trusted_keys(trusted_keys_dir()),
        SystemdService(unit),
        self_check,
        deadline=config.update.ready_deadline,
    )


def _print(status: UpdateStatus | None) -> None:
    print(json.dumps(None if status is None else status.to_json(), indent=1))


def read_config(path: Path | None) -> Config:
    """The daemon's settings as root reads them: never through a link, never much,
    and defaults when the file is bad (an update may be what fixes the daemon; of the
    file it needs only the port and the deadline)."""
    from peercam.config import ConfigError, build_config

    if path is None:
        return Config()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise OSError(f"{path} is not a regular file")
            raw = file.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise OSError(f"{path} is over {MAX_CONFIG_BYTES} bytes")
        return build_config(tomllib.loads(raw.decode()))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as error:
        print(f"peercam update: {error}; using the defaults", file=sys.stderr)
        return Config()


async def _until_stopped(updater: Updater, bundle: Path) -> UpdateStatus:
    """systemd stops a unit with SIGTERM: the update is cancelled, and an unproven
    release switched back from, rather than the process simply ending."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await updater.apply(bundle)


def run_command(args: argparse.Namespace) -> int:
    from peercam.service.state_dir import state_directory
    from peercam.update.incoming import INCOMING_NAME, incoming_directory
    from peercam.update.releases import UPLOADED
    from peercam.update.updater import UpdateBusy

    if args.status or args.recover or args.after_failure:
        config = Config()  # none of these reads the daemon's settings
    else:
        given = Path(args.config) if args.config else None
        config = read_config(given or (SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None))
    # The daemon's state directory from the command line or systemd's default, never
    # from peercam.toml: root reads in it, and the daemon may write that file.
    state_dir = Path(args.state_dir) if args.state_dir else state_directory(None)
    updater = make_updater(config, args.unit, state_dir)
    updater.allow_older = args.allow_older
    if args.status:
        _print(updater.last_status())
        return 0
    if os.geteuid() != 0:
        print("peercam update: run it as root (sudo)", file=sys.stderr)
        return 2
    if args.recover or args.after_failure:
        undone = updater.recover() if args.recover else updater.after_failure()
        if undone is not None:
            print(f"peercam update: {undone.reason}", file=sys.stderr)
        return 0
    if args.uploaded:
        # Out of the service user's directory first: what root checks and installs is
        # a copy the daemon can no longer change.
        bundle = updater.store.root / UPLOADED
        try:
            take_upload(incoming_directory(state_dir), INCOMING_NAME, bundle)
        except OSError as error:
            print(f"peercam update: no uploaded bundle: {error}", file=sys.stderr)
            return 1
    elif args.bundle is None:
        print("peercam update: give the bundle's file", file=sys.stderr)
        return 2
    else:
        bundle = args.bundle
    try:
        status = asyncio.run(_until_stopped(updater, bundle))
    except UpdateBusy as error:
        print(f"peercam update: {error}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("peercam update: stopped; the release before runs", file=sys.stderr)
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


def take_upload(directory: Path, name: str, target: Path) -> None:
    """Move the daemon's upload (`directory`/`name`) to root's `target`: opened
    beneath a directory opened without following links, a regular file of at most a
    bundle's size, read without blocking on a FIFO; the upload is gone afterwards
    whatever happened (left, it would start peercam-update.service again and again)."""
    from peercam.update.bundle import MAX_BUNDLE_BYTES

    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
            with os.fdopen(fd, "rb") as reading:
                found = os.fstat(reading.fileno())
                if not stat.S_ISREG(found.st_mode):
                    raise OSError("not a regular file")
                if found.st_size > MAX_BUNDLE_BYTES:
                    raise OSError(f"{found.st_size >> 20} MiB, more than any update")
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(out, "wb") as writing:
                    copied = 0
                    while chunk := reading.read(1 << 20):
                        copied += len(chunk)
                        if copied > MAX_BUNDLE_BYTES:
                            raise OSError("it grew while it was copied")
                        writing.write(chunk)
        except OSError:
            target.unlink(missing_ok=True)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
    finally:
        os.close(folder)
