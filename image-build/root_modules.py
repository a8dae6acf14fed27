"""Which loadable kernel modules the running system needed to reach its root file
system, and whether its initramfs holds each of them.

boot_test.py runs this inside a booted image (python3 over SSH, standard library
only) and prints what it finds, so that a boot on a new machine says which modules
that machine's root path takes. A module missing from the initramfs but loaded now
came from the root file system itself, after a timeout or a fallback: that machine
was lucky, not served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def module_name(name: str) -> str:
    """The kernel spells module names with underscores; files often use dashes."""
    return name.replace("-", "_")


def loaded(sysfs: Path, module: str) -> bool:
    # Built-in drivers have a /sys/module entry too; only a loaded module has initstate.
    return (sysfs / "module" / module / "initstate").exists()


def modules_behind(sysfs: Path, device: Path) -> set[str]:
    """Loadable modules driving `device`, its parents, and every device they take
    something from through device links (clocks, DMA, regulators, pins, power)."""
    found: set[str] = set()
    seen: set[Path] = set()
    top = (sysfs / "devices").resolve()
    pending = [device.resolve()]
    while pending:
        node = pending.pop()
        if node in seen or node == top or top not in node.parents:
            continue
        seen.add(node)
        module = node / "driver" / "module"
        if module.exists():
            name = module_name(module.resolve().name)
            if loaded(sysfs, name):
                found.add(name)
        for link in node.glob("supplier:*"):
            pending.append((link.resolve() / "supplier").resolve())
        pending.append(node.parent)
    return found


def with_dependencies(sysfs: Path, modules: set[str]) -> set[str]:
    """`modules` and every module they use: a module's holders/ lists its users."""
    closure = set(modules)
    while True:
        more = {
            entry.name
            for entry in (sysfs / "module").iterdir()
            if entry.name not in closure
            and loaded(sysfs, entry.name)
            and any(module_name(user.name) in closure for user in (entry / "holders").glob("*"))
        }
        if not more:
            return closure
        closure |= more


def root_device(sysfs: Path, root: str = "/") -> Path:
    number = os.stat(root).st_dev
    return sysfs / "dev" / "block" / f"{os.major(number)}:{os.minor(number)}"


def root_fstype(mounts: str, root: str = "/") -> str:
    types = [fields[2] for fields in map(str.split, mounts.splitlines()) if fields[1] == root]
    return types[-1]  # the last mount on / is the one in use


def needed_for_root(sysfs: Path, device: Path, fstype: str) -> set[str]:
    wanted = modules_behind(sysfs, device)
    if loaded(sysfs, module_name(fstype)):
        wanted.add(module_name(fstype))
    return with_dependencies(sysfs, wanted)


def missing_from(listing: list[str], modules: set[str]) -> list[str]:
    """Which of `modules` are not among the .ko files of an initramfs listing."""
    present = {
        module_name(Path(line).name.split(".ko")[0]) for line in listing if ".ko" in Path(line).name
    }
    return sorted(modules - present)


def main() -> int:
    sysfs = Path("/sys")
    fstype = root_fstype(Path("/proc/self/mounts").read_text())
    needed = needed_for_root(sysfs, root_device(sysfs), fstype)
    release = os.uname().release
    # The boot partition's copy is the one a Pi's firmware (and boot_test.py) loads.
    initrd = next(
        path
        for path in (
            Path(f"/boot/firmware/initrd.img-{release}"),
            Path(f"/boot/initrd.img-{release}"),
        )
        if path.exists()
    )
    listing = subprocess.run(
        ["lsinitramfs", str(initrd)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    print(
        json.dumps(
            {
                "root_device": root_device(sysfs).resolve().name,
                "root_fstype": fstype,
                "root_modules": sorted(needed),
                "missing_from_initramfs": missing_from(listing, needed),
                "initramfs_modules": len([line for line in listing if ".ko" in line]),
                "initramfs_bytes": initrd.stat().st_size,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
