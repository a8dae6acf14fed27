"""Take a flashable Raspberry Pi OS Lite style image apart into a root directory.

    unpack_image.py IMAGE(.img|.img.xz) ROOT --work DIR

The image's two partitions (FAT boot, ext4 root) are copied out of the file with
plain reads, and read as files: the root with debugfs (rdump), the boot partition
with mtools. No loop device and no mount, as the rest of the build. Prints
`disk_id=`, `boot_mb=` and `boot_label=` lines for build.sh.

debugfs's rdump writes files, directories and links with their owners, but leaves
out what a root file system also holds: it changes the owner after the mode, so the
kernel drops setuid and setgid bits (sudo, su, passwd, mount would stop working);
every hard link becomes its own copy; extended attributes (file capabilities such as
ping's cap_net_raw, ACLs) are not copied; device nodes, FIFOs and sockets are skipped.
This puts back all but the last (reported: a root file system normally has none,
/dev being the kernel's), reading each from the image with debugfs's own listing
(`ls -p`, `ea_list`, `ea_get`).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FAT_TYPES = {"b", "c", "e", "6"}
LINUX_TYPE = "83"
# What fetch_wheels.py builds for (cp311) and the image recipe knows.
SUPPORTED_RELEASE = "bookworm"
COPY_CHUNK = 1 << 20


class UnpackError(Exception):
    """The input is not an image this can take apart; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One directory entry as debugfs's parseable listing gives it."""

    path: str
    inode: int
    mode: int
    size: int


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int  # bytes
    kind: str


def partitions(image: Path) -> tuple[str, list[Partition]]:
    listing = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise UnpackError(f"no partition table: {listing.stderr.strip()}")
    table = json.loads(listing.stdout)["partitiontable"]
    if table.get("label") != "dos":
        raise UnpackError(f"the partition table is {table.get('label')}, not MBR (dos)")
    sector = int(table.get("sectorsize", 512))
    found = [
        Partition(int(p["start"]) * sector, int(p["size"]) * sector, str(p["type"]).lower())
        for p in table.get("partitions", [])
    ]
    if len(found) != 2 or found[0].kind not in FAT_TYPES or found[1].kind != LINUX_TYPE:
        kinds = ", ".join(p.kind for p in found) or "none"
        raise UnpackError(
            "expected two partitions, FAT boot then a Linux root (as Raspberry Pi OS Lite"
            f" ships), found types: {kinds}"
        )
    disk_id = str(table.get("id", "")).lower().removeprefix("0x")
    if len(disk_id) != 8:
        raise UnpackError(f"the disk identifier {disk_id!r} is not 8 hex digits")
    return disk_id, found


def copy_range(source: Path, start: int, size: int, target: Path) -> None:
    with source.open("rb") as reading, target.open("wb") as writing:
        reading.seek(start)
        left = size
        while left:
            chunk = reading.read(min(COPY_CHUNK, left))
            if not chunk:
                raise UnpackError(f"the image ends inside a partition ({source})")
            writing.write(chunk)
            left -= len(chunk)


def complaints(stderr: str) -> list[str]:
    """debugfs exits 0 whatever a command met; what went wrong is only on stderr,
    after its version banner."""
    return [line for line in stderr.splitlines() if line and not line.startswith("debugfs ")]


def debugfs(fs: Path, commands: list[str], work: Path) -> str:
    script = work / "debugfs.commands"
    script.write_text("".join(f"{command}\n" for command in commands))
    done = subprocess.run(
        ["debugfs", "-f", str(script), str(fs)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or complaints(done.stderr):
        raise UnpackError(f"debugfs failed: {done.stderr.strip()}")
    return done.stdout


def quoted(path: str) -> str:
    if '"' in path or "\n" in path:
        raise UnpackError(f"a file name debugfs cannot be told: {path!r}")
    return f'"{path}"'


def per_command(output: str, command: str) -> dict[str, list[str]]:
    """debugfs -f echoes each command as `debugfs: COMMAND "PATH"`; what follows is its."""
    results: dict[str, list[str]] = {}
    current: list[str] | None = None
    marker = f"debugfs: {command} "
    for line in output.splitlines():
        if line.startswith(marker):
            current = results.setdefault(line[len(marker) :].strip('"'), [])
        elif current is not None:
            current.append(line)
    return results


def entries(fs: Path, work: Path) -> list[Entry]:
    """Every entry of the file system, level by level (one debugfs run per depth)."""
    found: list[Entry] = []
    level = ["/"]
    while level:
        listed = per_command(debugfs(fs, [f"ls -p {quoted(d)}" for d in level], work), "ls -p")
        below: list[str] = []
        for directory, lines in listed.items():
            for line in lines:
                fields = line.split("/")
                # /inode/mode/uid/gid/name/size/ (name cannot hold a slash); inode 0
                # is an unused slot (lost+found is made with many).
                if len(fields) < 7 or fields[5] in ("", ".", "..") or fields[1] == "0":
                    continue
                path = directory.rstrip("/") + "/" + fields[5]
                size = int(fields[6]) if fields[6] else 0
                entry = Entry(path, int(fields[1]), int(fields[2], 8), size)
                found.append(entry)
                if stat.S_ISDIR(entry.mode):
                    below.append(path)
        level = below
    return found


def restore_modes_and_links(root: Path, found: list[Entry]) -> list[str]:
    skipped: list[str] = []
    first_path: dict[int, str] = {}
    for entry in found:
        target = root / entry.path.lstrip("/")
        if stat.S_ISLNK(entry.mode):
            continue
        if not (stat.S_ISREG(entry.mode) or stat.S_ISDIR(entry.mode)):
            skipped.append(entry.path)
            continue
        if stat.S_ISREG(entry.mode):
            if target.lstat().st_size != entry.size:
                # rdump wrote less than the image holds (the disk filled up, say).
                raise UnpackError(f"{entry.path} came out {target.lstat().st_size} bytes"
                                  f" long, not {entry.size}")  # fmt: skip
            linked = first_path.setdefault(entry.inode, entry.path)
            if linked != entry.path:
                target.unlink()
                os.link(root / linked.lstrip("/"), target)
                continue
        if stat.S_IMODE(target.lstat().st_mode) != stat.S_IMODE(entry.mode):
            os.chmod(target, stat.S_IMODE(entry.mode))
    return skipped


def restore_xattrs(fs: Path, root: Path, found: list[Entry], work: Path) -> int:
    candidates = sorted(
        {e.path for e in found if stat.S_ISREG(e.mode) or stat.S_ISDIR(e.mode)} | {"/"}
    )
    listed = per_command(debugfs(fs, [f"ea_list {quoted(p)}" for p in candidates], work), "ea_list")
    wanted: list[tuple[str, str]] = []
    for path, lines in listed.items():
        for line in lines:
            # "  security.capability (20) = 01 00 ..." under "Extended attributes:"
            if line.startswith("  ") and " (" in line:
                wanted.append((path, line.strip().split(" (", 1)[0]))
    value_dir = work / "xattr-values"
    value_dir.mkdir(exist_ok=True)
    commands = [
        f"ea_get -f {value_dir}/{n} {quoted(path)} {name}" for n, (path, name) in enumerate(wanted)
    ]
    if commands:
        debugfs(fs, commands, work)
    for n, (path, name) in enumerate(wanted):
        if not (value_dir / str(n)).exists():
            raise UnpackError(f"debugfs gave no value for {name} of {path}")
        value = (value_dir / str(n)).read_bytes()
        os.setxattr(root / path.lstrip("/"), name, value, follow_symlinks=False)
    return len(wanted)


def os_release(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        path = root / name
        if path.is_symlink():
            path = root / "usr/lib/os-release"
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition("=")
                found[key] = value.strip().strip('"')
            break
    return found


def boot_mount_point(root: Path) -> str:
    fstab = root / "etc/fstab"
    if fstab.exists():
        for line in fstab.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "vfat":
                return fields[1]
    return "/boot/firmware"


def unpack(image: Path, root: Path, work: Path) -> dict[str, str]:
    raw = image
    if image.suffix == ".xz":
        raw = work / "input.img"
        with lzma.open(image) as source, raw.open("wb") as target:
            shutil.copyfileobj(source, target, COPY_CHUNK)
    disk_id, (boot, system) = partitions(raw)
    boot_file, root_file = work / "input-boot.img", work / "input-root.img"
    copy_range(raw, boot.start, boot.size, boot_file)
    copy_range(raw, system.start, system.size, root_file)
    if raw != image:
        raw.unlink()
    checked = subprocess.run(
        ["e2fsck", "-fn", str(root_file)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise UnpackError(f"the root file system is not clean (e2fsck -fn):\n{checked.stdout}")
    root.mkdir(parents=True, exist_ok=True)
    dumped = subprocess.run(
        ["debugfs", "-R", f"rdump / {root}", str(root_file)], capture_output=True, text=True
    )
    if dumped.returncode != 0 or complaints(dumped.stderr):
        raise UnpackError(f"debugfs rdump failed: {dumped.stderr.strip()}")
    release = os_release(root)
    if release.get("VERSION_CODENAME") != SUPPORTED_RELEASE:
        raise UnpackError(
            f"it is {release.get('PRETTY_NAME', 'an unknown system')}: the wheels are built"
            f" for Python 3.11 and the image's layout, i.e. {SUPPORTED_RELEASE} only"
        )
    shutil.rmtree(root / "lost+found", ignore_errors=True)  # mkfs makes its own
    found = entries(root_file, work)
    skipped = restore_modes_and_links(root, [e for e in found if e.path != "/lost+found"])
    xattrs = restore_xattrs(root_file, root, found, work)
    root_file.unlink()
    mount_point = boot_mount_point(root)
    if mount_point != "/boot/firmware":
        raise UnpackError(
            f"the boot partition is mounted at {mount_point}: only Raspberry Pi OS bookworm"
            " and later (/boot/firmware) are supported"
        )
    firmware = root / "boot/firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mcopy", "-s", "-p", "-m", "-i", str(boot_file), "::/*", str(firmware)], check=True
    )
    label = subprocess.run(
        ["fatlabel", str(boot_file)], capture_output=True, text=True, check=False
    ).stdout.strip()
    boot_file.unlink()
    for path in skipped:
        print(f"unpack_image: left out {path} (not a file, directory or link)", file=sys.stderr)
    print(f"unpack_image: {len(found)} entries, {xattrs} extended attributes", file=sys.stderr)
    return {"disk_id": disk_id, "boot_mb": str(boot.size >> 20), "boot_label": label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    try:
        found = unpack(args.image, args.root, args.work)
    except UnpackError as error:
        sys.exit(f"unpack_image: {args.image}: {error}")
    for key, value in found.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
