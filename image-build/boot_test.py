"""Boot a built image under qemu-system-aarch64 and check it from outside, as a user
would: `make image-test`.

Two machines, each on a fresh copy of the image with a peercam.txt written onto its
boot partition (mtools, at the partition's offset: no mounting), both under TCG with
the image's own kernel and initramfs taken from that partition (qemu cannot run a
Pi's boot ROM):

- `virt`: a generic arm64 machine, the image as a virtio disk.
- `raspi3b`: qemu's Raspberry Pi 3 (BCM2837) with the Pi 3 device tree and
  cmdline.txt from the card, the image on the emulated SD card and the network on an
  emulated USB adapter behind the SoC's dwc2 controller: the drivers a Pi 3 uses.

User-mode port forwards reach the daemon and SSH (which the card turns on, with a key
made for the run). The same checks on both: /healthz, a WHEP offer answered with
H.264, the card's bad line reported to the admin; over SSH, systemd runs peercam as a
ready notify service and first boot disabled itself, with the card's hostname, and the
modules behind the root file system are all in the initramfs (root_modules.py); the
password gone from the card (after the plug is pulled) and the root partition grown
to the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import lzma
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription

FAT_OFFSET = 8192 * 512  # build.sh puts the boot partition at 4 MiB
MACHINES = ("virt", "raspi3b")
PI3_DTB = "bcm2837-rpi-3-b.dtb"  # raspi-firmware copies Debian's kernel's device trees
GROWTH = 1024 * 2**20  # a bigger card than the image: first boot grows the root into it
ROOT_MODULES = Path(__file__).resolve().parent / "root_modules.py"
SLOW_START_S = 600  # systemd's limits on the raspi3b, see qemu_command
# raspi3b: the USB network adapter goes in once Linux's dwc2 driver has its root hub up.
# Attached from power-on it sometimes never enumerated: dwc2 answered "Not connected"
# to every transfer while qemu showed the port connected (README: the raspi3b boot).
USB_HOST_UP = "hub 1-0:1.0: 1 port detected"
USB_SETTLE_S = 5.0
# A globally administered address, as a Pi 3's own USB Ethernet has: cdc_ether then
# names the interface eth0, which the image's network matches (e*). With a locally
# administered one, qemu's default 52:54:00:..., it is usb0 and never configured.
USB_NET: dict[str, object] = {
    "driver": "usb-net", "netdev": "net", "id": "usbnet", "mac": "b8:27:eb:00:00:01",
}  # fmt: skip
PASSWORD = "image-test-password"
CARD = """# written by image-build/boot_test.py
password = "{password}"
ssh = on
ssh_key = {key}
hostname = qemucam
camera = test
resolution = 320x240
fps = 10
video.codecs = h264
audio.enabled = false
colour = blue
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mtools(image: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    command, *rest = arguments
    return subprocess.run(
        [command, "-i", f"{image}@@{FAT_OFFSET}", *rest], check=True, capture_output=True
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the camera's own self-signed certificate
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def whep_offer(url: str, headers: dict[str, str]) -> tuple[int, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, body = await asyncio.to_thread(
        request,
        url,
        data=pc.localDescription.sdp.encode(),
        headers={**headers, "Content-Type": "application/sdp"},
    )
    if status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(body.decode(), "answer"))
    await pc.close()
    return status, body.decode(errors="replace")


# What systemd says about the units, asked over SSH (which the card turned on).
INSIDE = """
systemctl show peercam.service -p Type -p ActiveState -p SubState -p NRestarts
echo firstboot=$(systemctl is-enabled peercam-firstboot.service)
echo ssh=$(systemctl is-enabled ssh.service)
echo hostname=$(hostname)
echo owner=$(stat -c %U /var/lib/peercam/credentials.json)
echo failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | paste -sd,)
"""
EXPECTED = [
    "Type=notify", "ActiveState=active", "SubState=running", "NRestarts=0",
    "firstboot=disabled", "ssh=enabled", "hostname=qemucam", "owner=peercam", "failed=",
]  # fmt: skip


def qmp(path: Path, command: str, arguments: dict[str, object]) -> None:
    """One command on qemu's QMP socket; events in between are skipped, an error raised."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        stream = sock.makefile("rw")
        stream.readline()  # qemu's greeting
        for request in ({"execute": "qmp_capabilities"},
                        {"execute": command, "arguments": arguments}):  # fmt: skip
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "error" in reply:
                    raise RuntimeError(f"qemu refused {request['execute']}: {reply['error']}")
                if "return" in reply:
                    break


class UsbNetworkPlug:
    """Plugs the raspi3b's network adapter in a few seconds after its USB host came up."""

    def __init__(self, console: Path, qmp_socket: Path) -> None:
        self.console, self.qmp_socket = console, qmp_socket
        self.host_up: float | None = None
        self.plugged = False

    def __call__(self) -> None:
        if self.plugged:
            return
        if self.host_up is None:
            if USB_HOST_UP in console_text(self.console):
                self.host_up = time.monotonic()
            return
        if time.monotonic() - self.host_up >= USB_SETTLE_S:
            qmp(self.qmp_socket, "device_add", USB_NET)
            self.plugged = True
            log(f"USB network adapter plugged in ({USB_NET['mac']})")


def ssh(key: Path, port: int, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "BatchMode=yes",
         "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
        input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def check_inside(key: Path, port: int) -> tuple[list[str], dict[str, object]]:
    for _ in range(10):
        result = ssh(key, port, INSIDE)
        if result.returncode == 0:
            break
        time.sleep(5)
    else:
        return [f"ssh into the VM failed: {result.stderr.strip()}"], {}
    lines = result.stdout.split()
    log("inside: " + " ".join(lines))
    failures = [f"inside the VM: expected {line}" for line in EXPECTED if line not in lines]
    # What this machine's root path takes, and whether the initramfs holds it all.
    found = ssh(key, port, "python3 -", ROOT_MODULES.read_text())
    if found.returncode != 0:
        return [*failures, f"root_modules.py failed in the VM: {found.stderr.strip()}"], {}
    report: dict[str, object] = json.loads(found.stdout)
    log(f"root: {report}")
    if report["missing_from_initramfs"]:
        failures.append(
            f"the root file system needed {report['missing_from_initramfs']}, "
            "which the initramfs does not have"
        )
    return failures, report


@dataclass
class Outcome:
    machine: str
    failures: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Boot:
    """What the card hands qemu: the files a Pi's firmware would load from it."""

    kernel: Path
    initrd: Path
    dtb: Path
    cmdline: str
    disk_id: str


def sd_card_size(size: int) -> int:
    """The smallest power of two holding `size` bytes: qemu's SD card takes no other."""
    return 1 << max(size - 1, 0).bit_length()


def card_size(machine: str, built_size: int) -> int:
    grown = built_size + GROWTH
    return sd_card_size(grown) if machine == "raspi3b" else grown


def qemu_command(
    machine: str, boot: Boot, disk: Path, console: Path, qmp: Path, port: int, ssh_port: int
) -> list[str]:
    common = [
        "-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
        "-netdev",
        f"user,id=net,hostfwd=tcp:127.0.0.1:{port}-:8443,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-rtc", "base=utc", "-display", "none", "-monitor", "none", "-no-reboot",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]  # fmt: skip
    if machine == "virt":
        return [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
            *common,
            # No Pi firmware here to read cmdline.txt, and the console is virt's PL011.
            "-append", f"root=PARTUUID={boot.disk_id}-02 rootfstype=ext4 rootwait"
            " console=ttyAMA0 systemd.show_status=1",
            "-drive", f"if=none,file={disk},format=raw,id=card",
            "-device", "virtio-blk-pci,drive=card",
            # No option ROM: the kernel is loaded directly, and the ROM's package
            # (ipxe-qemu) is only a recommendation of qemu-system-arm.
            "-device", "virtio-net-pci,netdev=net,romfile=",
            "-serial", f"file:{console}",
        ]  # fmt: skip
    if machine == "raspi3b":
        return [
            # The board's own 4 Cortex-A53 and 1 GiB: qemu's raspi3b allows nothing else.
            "qemu-system-aarch64", "-M", "raspi3b", "-m", "1G", *common,
            "-dtb", str(boot.dtb),
            # The card's cmdline.txt, as the firmware passes it. systemd writes its status
            # to the last console=, and the serial port is this test's only screen. Under
            # TCG this Pi runs many times slower than the board: udevd started 160 s into
            # a boot on a loaded host and peercam's first start took over 90 s, so
            # systemd's 90 s limits on devices and starts are raised here.
            # qemu's adapter borrows the Linux USB gadget's IDs (0525:a4a2), which
            # cdc_subset claims as well as cdc_ether: when udev loaded cdc_subset first it
            # took the data interface as usb0 and cdc_ether's probe failed (-EBUSY).
            "-append", f"{boot.cmdline} console=ttyS1,115200 systemd.show_status=1"
            f" systemd.default_timeout_start_sec={SLOW_START_S}"
            f" systemd.default_device_timeout_sec={SLOW_START_S}"
            " module_blacklist=cdc_subset",
            # The network adapter is plugged in later (UsbNetworkPlug).
            "-drive", f"if=sd,file={disk},format=raw",
            # Serial port 0 is the PL011, which a Pi 3's device tree gives to Bluetooth.
            "-serial", "null", "-serial", f"file:{console}",
        ]  # fmt: skip
    raise ValueError(f"no such machine: {machine}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="the .img or .img.xz build.sh made")
    parser.add_argument("--machine", action="append", choices=MACHINES,
                        help="boot only this machine (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for boot")
    parser.add_argument("--keep", type=Path, help="keep the console logs in this directory")
    args = parser.parse_args()
    disk_id = Path(str(args.image).removesuffix(".xz") + ".disk-id").read_text().strip()
    results = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as name:
        work = Path(name)
        built = work / "built.img"
        if args.image.suffix == ".xz":
            with lzma.open(args.image) as source, built.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        else:
            shutil.copyfile(args.image, built)
        for machine in args.machine or MACHINES:
            results.append(boot_machine(machine, work / machine, built, disk_id, args))
    print(json.dumps([asdict(outcome) for outcome in results]))
    failures = [f"{outcome.machine}: {failure}" for outcome in results
                for failure in outcome.failures]  # fmt: skip
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def boot_machine(
    machine: str, work: Path, built: Path, disk_id: str, args: argparse.Namespace
) -> Outcome:
    """One machine, on a card of its own: each boot is a first boot."""
    work.mkdir()
    disk = work / "card.img"
    shutil.copyfile(built, disk)
    built_size = disk.stat().st_size
    with disk.open("r+b") as grow:
        grow.truncate(card_size(machine, built_size))
    # A key for this run only: SSH is how the test asks systemd inside the VM.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")],
                   check=True)  # fmt: skip
    key = (work / "key.pub").read_text().strip()
    (work / "peercam.txt").write_text(CARD.format(password=PASSWORD, key=key))
    mtools(disk, "mcopy", "-o", str(work / "peercam.txt"), "::/peercam.txt")
    # raspi-firmware keeps the versioned names (config.txt names them for the Pi).
    listing = mtools(disk, "mdir", "-b", "::/").stdout.decode().split()
    kernel = next(name for name in listing if name.startswith("::/vmlinuz-"))
    initrd = next(name for name in listing if name.startswith("::/initrd.img-"))
    wanted = {kernel: "vmlinuz", initrd: "initrd.img", f"::/{PI3_DTB}": PI3_DTB,
              "::/cmdline.txt": "cmdline.txt"}  # fmt: skip
    for source, target in wanted.items():
        mtools(disk, "mcopy", source, str(work / target))
    boot = Boot(
        kernel=work / "vmlinuz",
        initrd=work / "initrd.img",
        dtb=work / PI3_DTB,
        cmdline=" ".join((work / "cmdline.txt").read_text().split()),
        disk_id=disk_id,
    )
    return boot_and_check(machine, work, disk, boot, built_size, args)


def wait_for_health(
    vm: subprocess.Popen[bytes],
    base: str,
    console: Path,
    started: float,
    timeout: float,
    step: Callable[[], None],
) -> str:
    """Empty once /healthz answers, else why it never will. `step` runs on each poll."""
    while True:
        step()
        if vm.poll() is not None:
            return f"qemu exited ({vm.returncode}):\n{console_tail(console)}"
        if time.monotonic() - started > timeout:
            return f"no /healthz after {timeout:.0f} s; the console ends:\n{console_tail(console)}"
        try:
            status, body = request(base + "/healthz")
        except (OSError, urllib.error.URLError):
            status = 0
        if status == 200:
            log(f"/healthz answered {json.loads(body)}")
            return ""
        time.sleep(3)


def console_text(console: Path) -> str:
    if not console.exists():  # qemu has not opened it yet
        return ""
    # systemd's status lines, without their colours.
    return re.sub(r"\x1b\[[0-9;]*m", "", console.read_text(errors="replace"))


def console_tail(console: Path) -> str:
    return "\n".join(console_text(console).splitlines()[-40:])


def boot_and_check(
    machine: str, work: Path, disk: Path, boot: Boot, built_size: int, args: argparse.Namespace
) -> Outcome:
    port, ssh_port = free_port(), free_port()
    console = work / "console.log"
    qmp_socket = work / "qmp.sock"
    qemu = qemu_command(machine, boot, disk, console, qmp_socket, port, ssh_port)
    plug = UsbNetworkPlug(console, qmp_socket) if machine == "raspi3b" else None
    log(f"booting {machine} under qemu (TCG); the daemon will be at https://127.0.0.1:{port}")
    started = time.monotonic()
    vm = subprocess.Popen(qemu, stdin=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{port}"
    result = Outcome(machine)
    failures = result.failures
    try:
        problem = wait_for_health(vm, base, console, started, args.timeout, plug or (lambda: None))
        if problem:
            if plug and not plug.plugged:
                problem += f"\n(the USB network adapter was never plugged in: no {USB_HOST_UP!r})"
            failures.append(problem)
            return result
        boot_seconds = round(time.monotonic() - started)
        result.figures["boot_to_healthz_s"] = boot_seconds
        log(f"{machine}: /healthz after {boot_seconds} s")
        auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
        whep_status, answer = asyncio.run(whep_offer(base + "/whep", auth))
        log(f"WHEP offer: {whep_status}")
        if whep_status != 201 or "H264" not in answer:
            failures.append(f"WHEP offer answered {whep_status}: {answer[:300]}")
        status, session = request(base + "/api/session", headers=auth)
        notices = json.loads(session).get("notices", []) if status == 200 else []
        log(f"notices shown to the admin: {notices}")
        if not any("unknown setting colour" in notice for notice in notices):
            failures.append(f"/api/session {status}: the card's bad line is not reported")
        text = console_text(console)
        for pattern in (r"Finished peercam-firstboot", r"qemucam login:"):
            if not re.search(pattern, text):
                failures.append(f"console shows no {pattern!r}")
        inside, report = check_inside(work / "key", ssh_port)
        failures += inside
        result.figures.update(report)
    finally:
        vm.terminate()
        vm.wait(timeout=60)
        if args.keep and console.exists():
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(console, args.keep / f"console-{machine}.log")
    # The VM was stopped as a plug is pulled: what first boot wrote must be on the card.
    try:
        card = mtools(disk, "mtype", "::/peercam.txt").stdout.decode(errors="replace")
    except subprocess.CalledProcessError as error:
        card = ""
        listing = subprocess.run(["mdir", "-a", "-i", f"{disk}@@{FAT_OFFSET}", "::/"],
                                 capture_output=True, text=True).stdout  # fmt: skip
        failures.append(f"peercam.txt unreadable on the card: {error.stderr!r}\n{listing}")
    if PASSWORD in card:
        failures.append("the password is still on the card")
    elif card and "removed from this card" not in card:
        failures.append(f"the card's password line was not replaced:\n{card}")
    table = subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True)
    partitions = json.loads(table.stdout)["partitiontable"]["partitions"]
    end = (partitions[1]["start"] + partitions[1]["size"]) * 512
    size = disk.stat().st_size
    log(f"root partition ends at {end / 2**20:.0f} MiB of a {size / 2**20:.0f} MiB disk")
    if end <= built_size:
        failures.append("the root partition was not grown")
    return result


if __name__ == "__main__":
    sys.exit(main())
