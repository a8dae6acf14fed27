"""The first step of `make image BASE_IMAGE=…`: a Raspberry Pi OS Lite style image
(MBR, FAT boot, ext4 root) taken apart into a directory without mounting it, with
what debugfs's rdump alone would lose put back (setuid bits, hard links, extended
attributes such as file capabilities). Small images made here with the real tools
(mkfs.ext4 -d, mkfs.vfat, mcopy, sfdisk); the whole path, booted, is in
`make image-test`."""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

UNPACK = Path(__file__).resolve().parent.parent / "image-build" / "unpack_image.py"
TOOLS = ("sfdisk", "debugfs", "mkfs.ext4", "mkfs.vfat", "mcopy", "fatlabel", "e2fsck")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="owners and security.* attributes need root"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason=f"needs {', '.join(TOOLS)} (fdisk, e2fsprogs, dosfstools, mtools)",
    ),
]

CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+p
DISK_ID = "5e3da3da"


def make_root(root: Path, boot_at: str = "/boot/firmware", release: str = "bookworm") -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib").mkdir()
    (root / "etc").mkdir()
    # As in Debian: a relative link into /usr (resolved inside the image, not the host).
    (root / "usr/lib/os-release").write_text(
        f'PRETTY_NAME="Debian GNU/Linux ({release})"\nVERSION_CODENAME={release}\n'
    )
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "var/local").mkdir(parents=True)
    (root / "etc/fstab").write_text(
        f"proc /proc proc defaults 0 0\nPARTUUID={DISK_ID}-01  {boot_at}  vfat  defaults  0  2\n"
    )
    sudo = root / "usr/bin/sudo"
    sudo.write_bytes(b"\x7fELF sudo")
    os.chmod(sudo, 0o4755)
    ping = root / "usr/bin/ping"
    ping.write_bytes(b"\x7fELF ping")
    os.setxattr(ping, "security.capability", CAPABILITY)
    os.setxattr(root / "etc/fstab", "user.note", b"kept")
    (root / "usr/bin/perl5.36").write_bytes(b"perl")
    os.link(root / "usr/bin/perl5.36", root / "usr/bin/perl")
    (root / "usr/bin/python3").symlink_to("python3.11")
    os.chown(root / "var/local", 0, 50)
    os.chmod(root / "var/local", 0o2775)
    (root / "var/local/a name with spaces").write_text("x")
    mail = root / "var/mail-spool"
    mail.mkdir()
    os.chown(mail, 0, 8)
    os.chmod(mail, 0o3777)


def make_image(tmp: Path, root: Path, *, table: str = "dos", parts: int = 2) -> Path:
    firmware = tmp / "firmware"
    (firmware / "overlays").mkdir(parents=True)
    (firmware / "cmdline.txt").write_text(f"console=serial0,115200 root=PARTUUID={DISK_ID}-02\n")
    (firmware / "overlays/vc4-kms-v3d.dtbo").write_bytes(b"\xd0\x0d\xfe\xed")
    boot, system = tmp / "boot.part", tmp / "root.part"
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", "-n", "BOOTFS", str(boot), "65536"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["mcopy", "-s", "-i", str(boot), f"{firmware}/cmdline.txt",
                    f"{firmware}/overlays", "::/"], check=True)  # fmt: skip
    subprocess.run(["mkfs.ext4", "-q", "-d", str(root), str(system), "32M"], check=True)
    image = tmp / "lite.img"
    boot_start, boot_size, root_size = 8192, 131072, 65536
    root_start = boot_start + boot_size
    with image.open("wb") as f:
        f.truncate((root_start + root_size + 2048) * 512)  # room for a GPT backup
    lines = [f"label: {table}"]
    if table == "dos":
        lines.append(f"label-id: 0x{DISK_ID}")
    fat, linux = ("c", "83") if table == "dos" else ("L", "L")
    lines.append(f"start={boot_start}, size={boot_size}, type={fat}")
    if parts == 2:
        lines.append(f"start={root_start}, size={root_size}, type={linux}")
    subprocess.run(["sfdisk", "-q", str(image)], input="\n".join(lines) + "\n", text=True,
                   check=True)  # fmt: skip
    with image.open("r+b") as f:
        f.seek(boot_start * 512)
        f.write(boot.read_bytes())
        f.seek(root_start * 512)
        f.write(system.read_bytes())
    packed = tmp / "lite.img.xz"
    with image.open("rb") as source, lzma.open(packed, "wb", preset=0) as target:
        shutil.copyfileobj(source, target)
    return packed


def unpack(image: Path, out: Path, work: Path) -> subprocess.CompletedProcess[str]:
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(UNPACK), str(image), str(out), "--work", str(work)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes, dict[str, bytes]]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if "lost+found" in path.parts or path.is_relative_to(root / "boot/firmware"):
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path).encode()
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = b""
        attrs = {}
        if not stat.S_ISLNK(info.st_mode):
            attrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
        owner = (info.st_uid, info.st_gid)
        found[str(path.relative_to(root))] = (info.st_mode, *owner, content, attrs)
    return found


def test_a_lite_image_comes_apart_with_modes_links_and_attributes_kept(tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_root(source)
    image = make_image(tmp_path, source)
    out = tmp_path / "out"
    result = unpack(image, out, tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"disk_id={DISK_ID}", "boot_mb=64", "boot_label=BOOTFS"]
    assert tree(out) == tree(source)
    assert stat.S_IMODE((out / "usr/bin/sudo").stat().st_mode) == 0o4755
    assert os.getxattr(out / "usr/bin/ping", "security.capability") == CAPABILITY
    assert (out / "usr/bin/perl").stat().st_ino == (out / "usr/bin/perl5.36").stat().st_ino
    assert not (out / "lost+found").exists()
    firmware = out / "boot/firmware"
    assert (firmware / "cmdline.txt").read_text().startswith("console=serial0,115200")
    assert (firmware / "overlays/vc4-kms-v3d.dtbo").read_bytes() == b"\xd0\x0d\xfe\xed"


def test_what_was_put_back_survives_the_new_root_file_system(tmp_path: Path) -> None:
    """build.sh makes the new root with mkfs.ext4 -d from the unpacked directory."""
    source = tmp_path / "source"
    make_root(source)
    out = tmp_path / "out"
    assert unpack(make_image(tmp_path, source), out, tmp_path / "work").returncode == 0
    rebuilt = tmp_path / "rebuilt.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(out), str(rebuilt), "32M"], check=True)
    shown = subprocess.run(
        ["debugfs", "-R", "stat /usr/bin/sudo", str(rebuilt)], capture_output=True, text=True
    ).stdout
    assert "Mode:  04755" in shown
    attrs = subprocess.run(
        ["debugfs", "-R", "ea_list /usr/bin/ping", str(rebuilt)], capture_output=True, text=True
    ).stdout
    assert "security.capability (20) = 01 00 00 02 00 20" in attrs


@pytest.mark.parametrize(
    ("table", "parts", "expected"),
    [
        ("dos", 1, "expected two partitions, FAT boot then a Linux root"),
        ("gpt", 2, "the partition table is gpt, not MBR"),
    ],
)
def test_an_image_laid_out_otherwise_is_refused_with_the_reason(
    tmp_path: Path, table: str, parts: int, expected: str
) -> None:
    source = tmp_path / "source"
    make_root(source)
    result = unpack(make_image(tmp_path, source, table=table, parts=parts), tmp_path / "out",
                    tmp_path / "work")  # fmt: skip
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("boot_at", "release", "expected"),
    [
        ("/boot", "bookworm", "mounted at /boot: only Raspberry Pi OS bookworm"),
        ("/boot/firmware", "trixie", "it is Debian GNU/Linux (trixie): the wheels are built"),
    ],
)
def test_a_release_other_than_bookworm_is_refused(
    tmp_path: Path, boot_at: str, release: str, expected: str
) -> None:
    source = tmp_path / "source"
    make_root(source, boot_at=boot_at, release=release)
    result = unpack(make_image(tmp_path, source), tmp_path / "out", tmp_path / "work")
    assert result.returncode == 1
    assert expected in result.stderr


def test_something_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "photo.img"
    junk.write_bytes(os.urandom(4096))
    result = unpack(junk, tmp_path / "out", tmp_path / "work")
    assert result.returncode == 1
    assert "unpack_image:" in result.stderr and "Traceback" not in result.stderr
