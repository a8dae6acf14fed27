"""What the image recipe and its boot test promise without a build: the Raspberry Pi
OS base says exactly what it misses; the raspi3b boot's qemu command line and SD card
size; how the boot test finds the modules behind the root file system; the initramfs
module list. (The whole build and the boots under qemu are `make image-test`: most of
an hour, not part of `make test`.)"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

IMAGE_BUILD = Path(__file__).resolve().parent.parent / "image-build"
BUILD = IMAGE_BUILD / "build.sh"
MODULES_LIST = IMAGE_BUILD / "initramfs-modules"


@pytest.mark.skipif(os.geteuid() != 0, reason="build.sh runs as root (it checks that first)")
def test_the_raspberry_pi_os_base_names_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(BUILD), "--base", "raspios", "--out", str(tmp_path)],
        env={**os.environ, "RPI_KEYRING": str(tmp_path / "no-such-keyring.gpg")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "cannot build the Raspberry Pi OS base" in result.stderr
    assert f"its signing key {tmp_path / 'no-such-keyring.gpg'}" in result.stderr
    for package in ("linux-image-rpi-2712", "python3-picamera2", "libcamera-ipa"):
        assert package in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing built


# boot_test.py and root_modules.py are scripts in image-build/, not a package.
sys.path.insert(0, str(IMAGE_BUILD))
import boot_test  # noqa: E402
import root_modules  # noqa: E402


@pytest.mark.parametrize(
    ("size", "card"),
    [(1, 1), (2**30, 2**30), (2**30 + 1, 2**31), (1_660_000_000 + 2**30, 2**32)],
)
def test_a_raspi3b_card_is_rounded_up_to_a_power_of_two(size: int, card: int) -> None:
    assert boot_test.sd_card_size(size) == card


def test_only_the_raspi3b_card_is_rounded_and_both_have_room_to_grow() -> None:
    built = 1_660_000_000
    assert boot_test.card_size("virt", built) == built + boot_test.GROWTH
    assert boot_test.card_size("raspi3b", built) == 2**32


def boot_files(tmp_path: Path) -> boot_test.Boot:
    return boot_test.Boot(
        kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img",
        dtb=tmp_path / "bcm2837-rpi-3-b.dtb",
        cmdline="console=tty0 console=ttyS1,115200 root=PARTUUID=553b2763-02 rw rootwait",
        disk_id="553b2763",
    )  # fmt: skip


def option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == name]


def test_the_raspi3b_boot_uses_the_cards_pi_files_sd_card_and_usb_network(tmp_path: Path) -> None:
    boot = boot_files(tmp_path)
    disk, console, qmp = tmp_path / "card.img", tmp_path / "console.log", tmp_path / "qmp"
    command = boot_test.qemu_command("raspi3b", boot, disk, console, qmp, 8443, 2222)
    assert option(command, "-M") == ["raspi3b"]
    assert option(command, "-m") == ["1G"]  # the machine accepts nothing else
    assert option(command, "-dtb") == [str(boot.dtb)]
    assert option(command, "-kernel") == [str(boot.kernel)]
    assert option(command, "-initrd") == [str(boot.initrd)]
    # The card's own command line, root and all; the console systemd writes to is the
    # last console=, and the test reads the serial port.
    (append,) = option(command, "-append")
    assert append.startswith(boot.cmdline + " ")
    assert [word for word in append.split() if word.startswith("console=")][-1] == (
        "console=ttyS1,115200"
    )
    # cdc_ether, not cdc_subset, must get qemu's adapter (it would be usb0 otherwise).
    assert "module_blacklist=cdc_subset" in append.split()
    assert option(command, "-drive") == [f"if=sd,file={disk},format=raw"]
    (netdev,) = option(command, "-netdev")
    assert netdev.startswith("user,id=net,")
    assert "hostfwd=tcp:127.0.0.1:8443-:8443" in netdev
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    # The USB adapter is plugged in through QMP once the guest's USB host is up.
    assert option(command, "-device") == []
    assert option(command, "-qmp") == [f"unix:{qmp},server=on,wait=off"]
    assert boot_test.USB_NET["netdev"] == "net"
    # The mini UART is the second serial port; the first (PL011) is Bluetooth's.
    assert option(command, "-serial") == ["null", f"file:{console}"]
    assert not any("virtio" in word for word in command)


def test_the_virt_boot_keeps_its_virtio_disk_and_network(tmp_path: Path) -> None:
    boot = boot_files(tmp_path)
    disk = tmp_path / "card.img"
    command = boot_test.qemu_command(
        "virt", boot, disk, tmp_path / "log", tmp_path / "q", 8443, 2222
    )
    assert option(command, "-M") == ["virt"]
    assert option(command, "-device") == [
        "virtio-blk-pci,drive=card",
        "virtio-net-pci,netdev=net,romfile=",
    ]
    assert "root=PARTUUID=553b2763-02" in option(command, "-append")[0]
    assert "-dtb" not in command


def test_the_usb_adapter_is_named_so_the_images_network_configures_it() -> None:
    """usbnet names a point-to-point adapter usbN when its address is locally
    administered, ethN otherwise; the image configures only what its wired network
    file matches."""
    first_octet = int(str(boot_test.USB_NET["mac"]).split(":")[0], 16)
    assert first_octet & 0x02 == 0  # globally administered: eth0
    wired = (IMAGE_BUILD / "rootfs/etc/systemd/network/20-wired.network").read_text()
    (pattern,) = [line.split("=", 1)[1] for line in wired.splitlines() if line.startswith("Name=")]
    assert fnmatch.fnmatch("eth0", pattern)
    assert not fnmatch.fnmatch("usb0", pattern)  # why the address matters


def fake_qmp(path: Path, replies: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    """A QMP server for one connection: a greeting, then the scripted replies to each
    command. Returns the list the commands it received are appended to."""
    received: list[dict[str, object]] = []
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        connection, _ = server.accept()
        with connection, server, connection.makefile("rw") as stream:
            stream.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}) + "\n")
            stream.flush()
            for line in stream:
                request = json.loads(line)
                received.append(request)
                for reply in replies[str(request["execute"])]:
                    stream.write(json.dumps(reply) + "\n")
                stream.flush()

    threading.Thread(target=serve, daemon=True).start()
    return received


def test_qmp_negotiates_then_sends_the_command_skipping_events(tmp_path: Path) -> None:
    received = fake_qmp(tmp_path / "qmp", {
        "qmp_capabilities": [{"return": {}}],
        "device_add": [{"event": "DEVICE_TRAY_MOVED", "data": {}}, {"return": {}}],
    })  # fmt: skip
    boot_test.qmp(tmp_path / "qmp", "device_add", boot_test.USB_NET)
    assert received == [
        {"execute": "qmp_capabilities"},
        {"execute": "device_add", "arguments": boot_test.USB_NET},
    ]


def test_qmp_says_what_qemu_refused(tmp_path: Path) -> None:
    fake_qmp(tmp_path / "qmp", {
        "qmp_capabilities": [{"return": {}}],
        "device_add": [{"error": {"class": "GenericError", "desc": "Bus 'usb-bus.0' not found"}}],
    })  # fmt: skip
    with pytest.raises(RuntimeError, match=r"qemu refused device_add.*usb-bus\.0"):
        boot_test.qmp(tmp_path / "qmp", "device_add", boot_test.USB_NET)


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def driver(sysfs: Path, device: Path, bus: str, name: str, module: str) -> None:
    """Bind a fake device to a driver of `module`; a loaded module has an initstate."""
    drivers = sysfs / "bus" / bus / "drivers" / name
    link(drivers / "module", sysfs / "module" / module)
    (sysfs / "module" / module).mkdir(parents=True, exist_ok=True)
    link(device / "driver", drivers)


def loaded(sysfs: Path, module: str, *users: str) -> None:
    (sysfs / "module" / module / "holders").mkdir(parents=True, exist_ok=True)
    (sysfs / "module" / module / "initstate").write_text("live\n")
    for user in users:
        link(sysfs / "module" / module / "holders" / user, sysfs / "module" / user)


def test_the_modules_behind_a_pi_3_root_are_found_through_parents_and_suppliers(
    tmp_path: Path,
) -> None:
    """A fake sysfs shaped like the raspi3b's: the SD card under the SoC's SD host,
    which takes its DMA channel (built in) and its supply (a module) through device
    links; ext4 and what it uses as modules; an unrelated sound module loaded too."""
    sysfs = tmp_path / "sys"
    soc = sysfs / "devices" / "platform" / "soc"
    host = soc / "3f202000.mmc"
    card = host / "mmc_host" / "mmc0" / "mmc0:aaaa"
    partition = card / "block" / "mmcblk0" / "mmcblk0p2"
    partition.mkdir(parents=True)
    dma, supply = soc / "3f007000.dma", sysfs / "devices" / "platform" / "regulator-sd"
    dma.mkdir()
    supply.mkdir()
    driver(sysfs, host, "platform", "sdhost-bcm2835", "bcm2835")
    loaded(sysfs, "bcm2835")
    driver(sysfs, card, "mmc", "mmcblk", "mmc_block")  # built in: no initstate
    driver(sysfs, dma, "platform", "bcm2835-dma", "bcm2835_dma")
    driver(sysfs, supply, "platform", "reg-fixed-voltage", "fixed")
    loaded(sysfs, "fixed")
    for supplier in (dma, supply):
        name = f"platform:{supplier.name}"
        devlink = sysfs / "devices" / "virtual" / "devlink" / f"{name}--platform:{host.name}"
        link(devlink / "supplier", supplier)
        link(host / f"supplier:{name}", devlink)
    loaded(sysfs, "ext4")
    loaded(sysfs, "jbd2", "ext4")
    loaded(sysfs, "mbcache", "ext4")
    loaded(sysfs, "snd_bcm2835")
    link(sysfs / "dev" / "block" / "179:2", partition)

    needed = root_modules.needed_for_root(sysfs, sysfs / "dev" / "block" / "179:2", "ext4")
    assert needed == {"bcm2835", "fixed", "ext4", "jbd2", "mbcache"}

    listing = [
        "usr/lib/modules/6.1.0-57-arm64/kernel/drivers/mmc/host/bcm2835.ko",
        "usr/lib/modules/6.1.0-57-arm64/kernel/fs/ext4/ext4.ko",
        "usr/lib/modules/6.1.0-57-arm64/kernel/fs/jbd2/jbd2.ko",
        "usr/lib/modules/6.1.0-57-arm64/kernel/fs/mbcache.ko.xz",
        "usr/lib/modules/6.1.0-57-arm64/modules.dep",
    ]
    assert root_modules.missing_from(listing, needed) == ["fixed"]


def test_the_root_file_system_type_is_the_last_mount_on_root() -> None:
    mounts = (
        "rootfs / rootfs rw 0 0\n/dev/mmcblk0p2 / ext4 rw,noatime 0 0\nproc /proc proc rw 0 0\n"
    )
    assert root_modules.root_fstype(mounts) == "ext4"


def test_the_initramfs_list_holds_what_each_board_needs_to_reach_its_root() -> None:
    """MODULES=list: only these reach the initramfs, so a board whose root driver is
    missing here cannot boot. Each need comes from Debian's 6.1 device trees and kernel
    configuration (built-in drivers need no entry)."""
    conf = (IMAGE_BUILD / "initramfs.conf").read_text()
    assert "MODULES=list" in conf.splitlines()
    entries = [line.split() for line in MODULES_LIST.read_text().splitlines()
               if line.strip() and not line.startswith("#")]  # fmt: skip
    # mkinitramfs takes a line's first word as the module and passes the rest to it.
    assert all(len(words) == 1 for words in entries)
    listed = {words[0] for words in entries}
    needs = {
        # Pi 3, 3+ and Zero 2 W: the SD card is on "brcm,bcm2835-sdhost".
        "Pi 3 / Zero 2 SD": {"bcm2835"},
        # Pi 4 / 400 / CM4: "brcm,bcm2711-emmc2", powered by a regulator-fixed and
        # switched to 1.8 V by a regulator-gpio.
        "Pi 4 SD": {"sdhci-iproc", "fixed", "gpio-regulator"},
        "root file system": {"ext4"},
        # The qemu -M virt boot of make image-test.
        "virt": {"virtio_blk", "virtio_pci"},
        # A card in a USB reader or a USB disk: dwc2 (with its PHY) on a Pi 3, the VL805
        # behind PCIe on a Pi 4, which its firmware loads through the reset controller.
        "USB boot": {"usb-storage", "uas", "sd_mod", "dwc2", "phy-generic", "xhci-pci",
                     "reset-raspberrypi"},
    }  # fmt: skip
    for board, modules in needs.items():
        assert modules <= listed, f"{board}: {sorted(modules - listed)} not listed"
