"""The `peercam firstboot` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from peercam.auth.store import CredentialError
from peercam.firstboot.first_boot import (
    FirstBootPaths,
    FirstBootResult,
    hand_config_to_service,
    run_first_boot,
)
from peercam.firstboot.setup_code_file import boot_partition, publish_setup_code
from peercam.firstboot.system_root import SystemRoot
from peercam.firstboot.time_zone import apply_time_zone
from peercam.firstboot.writable_root import commit_machine_id, on_read_only


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    firstboot = commands.add_parser(
        "firstboot", help="apply the boot partition's peercam.txt (run by systemd at boot)"
    )
    firstboot.add_argument(
        "--root", type=Path, default=Path("/"), help="the system to change (default /)"
    )
    firstboot.add_argument("--boot-file", type=Path, help="default: ROOT/boot/firmware/peercam.txt")
    firstboot.add_argument("--state-dir", type=Path, help="default: ROOT/var/lib/peercam")
    firstboot.add_argument(
        "--config-file", type=Path, help="default: ROOT/etc/peercam/peercam.toml"
    )
    firstboot.add_argument(
        "--if-changed", action="store_true", help="only if the file changed since it was applied"
    )
    firstboot.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def run_command(args: argparse.Namespace) -> int:
    root = SystemRoot(args.root, live=args.root.resolve() == Path("/"))
    found = FirstBootPaths.within(root)
    paths = FirstBootPaths(
        args.boot_file or found.boot_file,
        args.state_dir or found.state_dir,
        args.config_file or found.config_file,
    )
    failed = False
    result = None
    card = boot_partition(root, paths.boot_file)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("machine id", lambda: commit_machine_id(root)),
        # The system's files on the root, and the secrets taken off the card.
        ("peercam.txt", lambda: on_read_only(
            root, lambda: run_first_boot(root, paths, only_if_changed=args.if_changed),
            Path("/"), *([card] if card is not None else []),
        )),
        # Every start: a camera still without an admin shows its setup code on the
        # card, the daemon may save its settings, and the system keeps their time zone.
        ("setup code", lambda: on_read_only(
            root, lambda: publish_setup_code(root, paths.state_dir, card),
            *([card] if card is not None else []),
        )),
        ("settings file", lambda: hand_config_to_service(root, paths.config_file)),
        ("time zone", lambda: on_read_only(
            root, lambda: apply_time_zone(root, paths.config_file)
        )),
    ]  # fmt: skip
    for name, step in steps:
        try:
            done = step()
        except (OSError, CredentialError) as error:
            # A read-only or full card: said in the journal; each step still runs, and
            # the daemon still starts.
            print(f"peercam firstboot: {name}: {error}", file=sys.stderr)
            failed = True
            continue
        if isinstance(done, FirstBootResult):
            result = done
    if result is not None and result.applied:
        print(f"peercam firstboot: applied {paths.boot_file} ({len(result.problems)} problems)")
    return 1 if failed else 0
