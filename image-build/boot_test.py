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
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
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
recording.post_seconds = 4
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
INSIDE = r"""
systemctl show peercam.service -p Type -p ActiveState -p SubState -p NRestarts
echo firstboot=$(systemctl is-enabled peercam-firstboot.service)
echo ssh=$(systemctl is-enabled ssh.service)
echo hostname=$(hostname)
echo owner=$(stat -c %U /var/lib/peercam/credentials.json)
echo failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | paste -sd,)
echo root=$(findmnt -no OPTIONS / | cut -d, -f1)
echo boot=$(findmnt -no OPTIONS /boot/firmware | cut -d, -f1)
echo data=$(findmnt -no FSTYPE /data)
echo state=$(findmnt -no SOURCE /var/lib/peercam | sed 's/.*\[//; s/\]//')
echo settings=$(findmnt -no SOURCE /etc/peercam | sed 's/.*\[//; s/\]//')
echo machineid=$(mountpoint -q /etc/machine-id && echo transient || echo kept)
echo journal=$(ls /var/log/journal/*/system.journal >/dev/null 2>&1 && echo persistent || echo none)
echo recover=$(systemctl show -p Result --value peercam-update-recover.service)
echo updates=$(systemctl is-active peercam-update.path)
"""
EXPECTED = [
    "Type=notify", "ActiveState=active", "SubState=running", "NRestarts=0",
    "firstboot=disabled", "ssh=enabled", "hostname=qemucam", "owner=peercam", "failed=",
    "root=ro", "boot=ro", "data=ext4", "state=/peercam", "settings=/etc-peercam", "machineid=kept",
    "journal=persistent", "recover=success", "updates=active",
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


def ssh(
    key: Path, port: int, command: str, stdin: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "BatchMode=yes",
         "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
        input=stdin, capture_output=True, text=True, timeout=timeout,
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
    parser.add_argument(
        "--bundles", type=Path, help="test_bundles.py's output for aarch64: updates tested on virt"
    )
    parser.add_argument(
        "--plug-pulls",
        type=int,
        default=0,
        help="this many power cuts on virt while it records and saves",
    )
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
    end = (partitions[2]["start"] + partitions[2]["size"]) * 512
    size = disk.stat().st_size
    log(f"data partition ends at {end / 2**20:.0f} MiB of a {size / 2**20:.0f} MiB disk")
    if end <= built_size:
        failures.append("the data partition was not grown")
    if machine == "virt" and args.bundles and not failures:
        updates = UpdateRun(work, disk, boot, args)
        failures += updates.run()
        result.figures["updates"] = updates.figures
    if machine == "virt" and args.plug_pulls and not failures:
        pulls = PlugPulls(work, disk, boot, args)
        failures += pulls.run(args.plug_pulls)
        result.figures["plug_pulls"] = pulls.figures
    return result


AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
STATUS_FILE = "/var/lib/peercam-releases/status.json"


class Vm:
    """One more boot of a card that has booted before, on virt; `pull_plug` ends it
    as a power cut does (qemu killed: nothing is flushed, the guest is not told)."""

    def __init__(self, work: Path, disk: Path, boot: Boot, name: str) -> None:
        self.port, self.ssh_port = free_port(), free_port()
        self.key = work / "key"
        self.console = work / f"console-{name}.log"
        command = qemu_command("virt", boot, disk, self.console, work / f"qmp-{name}.sock",
                               self.port, self.ssh_port)  # fmt: skip
        self.base = f"https://127.0.0.1:{self.port}"
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float) -> str:
        return wait_for_health(self.process, self.base, self.console, self.started, timeout,
                               lambda: None)  # fmt: skip

    def ssh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return ssh(self.key, self.ssh_port, command, timeout=timeout)

    def put(self, local: Path, remote: str) -> None:
        with local.open("rb") as source:
            subprocess.run(
                ["ssh", "-i", str(self.key), "-p", str(self.ssh_port),
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "LogLevel=ERROR", "root@127.0.0.1", f"cat > {remote}"],
                stdin=source, check=True, capture_output=True, timeout=900,
            )  # fmt: skip

    def api(self, path: str, data: bytes | None = None, method: str | None = None
            ) -> tuple[int, object]:  # fmt: skip
        headers = {**AUTH, **({"Content-Type": "application/json"} if data else {})}
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(req, timeout=60, context=context) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except OSError as error:
            # Refused, reset, timed out: a daemon (re)starting. Status 0 says so.
            return 0, str(error)
        kind = response.headers.get_content_type()
        return status, json.loads(body) if kind == "application/json" else body

    def status(self) -> dict[str, object]:
        shown = self.ssh(f"cat {STATUS_FILE} 2>/dev/null || echo null", timeout=60)
        found = json.loads(shown.stdout or "null") if shown.returncode == 0 else None
        return found if isinstance(found, dict) else {}

    def pull_plug(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)


class UpdateRun:
    """Updates on the booted card: a tampered bundle refused, a good one kept, one
    whose daemon exits at start rolled back, one whose daemon fails only after it was
    kept rolled back by the trial, and power cut while an update installs and while it
    is switched to: each time the camera comes back on the good release."""

    def __init__(self, work: Path, disk: Path, boot: Boot, args: argparse.Namespace) -> None:
        self.work, self.disk, self.boot, self.args = work, disk, boot, args
        self.versions = json.loads((args.bundles / "versions.json").read_text())
        self.figures: dict[str, object] = {}
        self.failures: list[str] = []

    def expect(self, condition: bool, what: str) -> bool:
        if not condition:
            self.failures.append(what)
        return condition

    def running(self, vm: Vm) -> str:
        status, body = vm.api("/api/update")
        return str(body.get("running")) if status == 200 and isinstance(body, dict) else "?"

    def run(self) -> list[str]:
        vm = Vm(self.work, self.disk, self.boot, "updates")
        try:
            problem = vm.wait(self.args.timeout)
            if problem:
                return [f"updates: {problem}"]
            for kind in ("good", "broken", "later", "tampered"):
                vm.put(self.args.bundles / f"{kind}.peercam-update", f"/data/{kind}.bundle")
            refused = vm.ssh("peercam update /data/tampered.bundle", timeout=600)
            log(f"tampered: {refused.returncode} {refused.stderr.strip()}")
            self.expect(refused.returncode == 1 and "refused: " in refused.stderr,
                        f"a tampered bundle was not refused: {refused.stderr}")  # fmt: skip
            began = time.monotonic()
            good = vm.ssh("peercam update /data/good.bundle", timeout=3600)
            self.figures["good_update_s"] = round(time.monotonic() - began)
            took = self.figures["good_update_s"]
            log(f"good: {good.returncode} {good.stderr.strip()} in {took} s")
            kept = vm.status()
            self.figures["good_install_s"] = kept.get("install_seconds")
            self.figures["good_switch_s"] = kept.get("switch_seconds")
            self.expect(good.returncode == 0 and kept.get("state") == "kept",
                        f"the good update was not kept: {good.stderr} {kept}")  # fmt: skip
            self.expect(self.running(vm) == self.versions["good"],
                        f"after the good update the daemon runs {self.running(vm)}")  # fmt: skip
            began = time.monotonic()
            broken = vm.ssh("peercam update /data/broken.bundle", timeout=3600)
            self.figures["broken_update_s"] = round(time.monotonic() - began)
            log(f"broken: {broken.returncode} {broken.stderr.strip()}")
            back = vm.status()
            self.figures["rollback_switch_s"] = back.get("switch_seconds")
            rolled = broken.returncode == 1 and "exited at start" in str(back.get("reason"))
            self.expect(rolled, f"the broken update was not rolled back: {broken.stderr} {back}")
            self.expect(self.running(vm) == self.versions["good"],
                        f"after the rollback the daemon runs {self.running(vm)}")  # fmt: skip
            failed = vm.ssh("systemctl list-units --failed --plain --no-legend", timeout=60)
            self.expect(failed.stdout.strip() == "", f"failed units: {failed.stdout}")
            self.on_trial(vm)
        finally:
            vm.pull_plug()
        for phase in ("installing", "switched"):
            self.cut_during(phase)
        return self.failures

    def on_trial(self, vm: Vm) -> None:
        """A release that passes its self-check, then fails at every start after it:
        once systemd gives up on the daemon, the release before it comes back."""
        later = vm.ssh("peercam update /data/later.bundle", timeout=3600)
        kept = vm.status()
        log(f"later: {later.returncode} {later.stderr.strip()}")
        if not self.expect(
            later.returncode == 0 and kept.get("state") == "kept",
            f"the later-failing update was not kept: {later.stderr} {kept}",
        ):
            return
        began = time.monotonic()
        vm.ssh("systemctl restart --no-block peercam.service", timeout=60)
        deadline = began + 900
        while (status := vm.status()).get("state") == "kept":
            if time.monotonic() > deadline:
                self.failures.append(f"a daemon failing after its update was kept: {status}")
                return
            time.sleep(5)
        log(f"on trial: {status.get('state')}: {status.get('reason')}")
        self.expect(status.get("state") == "rolled_back" and
                    "kept failing" in str(status.get("reason")),
                    f"a daemon failing after its update was kept: {status}")  # fmt: skip
        while self.running(vm) != self.versions["good"] and time.monotonic() < deadline:
            time.sleep(5)
        self.figures["trial_rollback_s"] = round(time.monotonic() - began)
        self.expect(self.running(vm) == self.versions["good"],
                    f"after the trial's rollback the daemon runs {self.running(vm)}")  # fmt: skip
        vm.ssh("rm -f /var/lib/peercam/test-bundle-started", timeout=60)
        failed = vm.ssh("systemctl list-units --failed --plain --no-legend", timeout=60)
        self.expect("peercam" not in failed.stdout, f"failed units: {failed.stdout}")

    def cut_during(self, phase: str) -> None:
        vm = Vm(self.work, self.disk, self.boot, f"cut-{phase}")
        try:
            problem = vm.wait(self.args.timeout)
            if problem:
                self.failures.append(f"before the cut while {phase}: {problem}")
                return
            started = vm.ssh("systemd-run --unit=test-update --collect peercam update "
                             "/data/broken.bundle", timeout=60)  # fmt: skip
            self.expect(started.returncode == 0, f"systemd-run: {started.stderr}")
            deadline = time.monotonic() + 3600
            while vm.status().get("state") != phase:
                if time.monotonic() > deadline:
                    self.failures.append(f"the update never reached {phase}: {vm.status()}")
                    return
                time.sleep(1)
            if phase == "installing":
                time.sleep(20)  # well into pip's work
            log(f"pulling the plug while the update is {phase}")
        finally:
            vm.pull_plug()
        after = Vm(self.work, self.disk, self.boot, f"after-{phase}")
        try:
            problem = after.wait(self.args.timeout)
            if problem:
                self.failures.append(f"after a cut while {phase}: {problem}")
                return
            status = after.status()
            log(f"after a cut while {phase}: {status.get('state')}: {status.get('reason')}")
            self.figures[f"cut_while_{phase}"] = status.get("reason")
            self.expect("power went off" in str(status.get("reason")),
                        f"after a cut while {phase} the status says {status}")  # fmt: skip
            runs = self.running(after)
            self.expect(runs == self.versions["good"], f"after a cut while {phase}: runs {runs}")
            left = after.ssh("ls /var/lib/peercam-releases/releases", timeout=60).stdout.split()
            self.expect(not any(name.endswith(".partial") or
                                name.startswith(self.versions["broken"] + "-") for name in left),
                        f"after a cut while {phase} releases left: {left}")  # fmt: skip
            failed = after.ssh("systemctl list-units --failed --plain --no-legend", timeout=60)
            self.expect(failed.stdout.strip() == "", f"failed units: {failed.stdout}")
        finally:
            after.pull_plug()


class PlugPulls:
    """The plug pulled at random moments while a clip records and a setting is saved;
    each boot after must serve, its clips all play, and the setting be the old value or
    the new one, never anything else."""

    SETTING = ("motion", "cooldown_seconds")
    VALUES = (30.0, 45.0)

    def __init__(self, work: Path, disk: Path, boot: Boot, args: argparse.Namespace) -> None:
        self.work, self.disk, self.boot, self.args = work, disk, boot, args
        self.figures: dict[str, object] = {"boots": [], "fsck": [], "clips_checked": 0}
        self.failures: list[str] = []

    def setting(self, vm: Vm) -> tuple[object, object]:
        status, body = vm.api("/api/settings")
        if status != 200 or not isinstance(body, dict):
            return None, None
        section, key = self.SETTING
        written = body["written"].get(section, {}).get(key, self.VALUES[0])
        return written, body["running"][section][key]

    def clips_play(self, vm: Vm) -> int:
        import av  # the host's PyAV: a player that knows nothing of how clips are written

        status, listing = vm.api("/api/events")
        if status != 200 or not isinstance(listing, dict):
            self.failures.append(f"/api/events answered {status}")
            return 0
        for clip in listing["clips"]:
            status, body = vm.api(f"/api/clips/{clip['id']}")
            if status != 200 or not isinstance(body, bytes):
                self.failures.append(f"clip {clip['id']} listed but not served ({status})")
                continue
            path = self.work / "clip.mp4"
            path.write_bytes(body)
            try:
                with av.open(str(path)) as container:
                    frames = sum(1 for _ in container.decode(video=0))
            except av.error.FFmpegError as error:
                frames = 0
                self.failures.append(f"clip {clip['id']} does not play: {error}")
            if frames == 0:
                self.failures.append(f"clip {clip['id']} has no picture")
        return len(listing["clips"])

    def record(self, vm: Vm) -> str | None:
        """Record now; the clip's id once the daemon has a picture to record."""
        for _ in range(30):
            status, body = vm.api("/api/events", data=b"", method="POST")
            if status == 202 and isinstance(body, dict):
                return str(body["id"])
            time.sleep(1)
        return None

    def finished(self, vm: Vm, clip_id: str, within: float = 90) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, listing = vm.api("/api/events")
            if status == 200 and isinstance(listing, dict):
                if any(clip["id"] == clip_id for clip in listing["clips"]):
                    return True
            time.sleep(2)
        return False

    def run(self, pulls: int) -> list[str]:
        rng = random.Random(24)
        allowed: set[object] = {self.VALUES[0]}
        for n in range(pulls + 1):
            vm = Vm(self.work, self.disk, self.boot, f"pull-{n}")
            try:
                problem = vm.wait(self.args.timeout)
                if problem:
                    self.failures.append(f"boot {n} after {n} plug pulls: {problem}")
                    return self.failures
                boots = self.figures["boots"]
                assert isinstance(boots, list)
                boots.append(round(time.monotonic() - vm.started))
                written, running = self.setting(vm)
                if written not in allowed or running != written:
                    either = " or ".join(sorted(map(str, allowed)))
                    self.failures.append(
                        f"boot {n}: the setting is {written!r} (running {running!r}), not {either}"
                    )
                checked = self.clips_play(vm)
                if checked < n:  # each boot before recorded one clip whole
                    self.failures.append(f"boot {n}: {checked} clips listed, {n} recorded whole")
                self.figures["clips_checked"] = int(str(self.figures["clips_checked"])) + checked
                fsck = vm.ssh("journalctl -b -o cat -u 'systemd-fsck*' | grep -v '^$' | tail -5",
                              timeout=60).stdout.strip()  # fmt: skip
                fscks = self.figures["fsck"]
                assert isinstance(fscks, list)
                fscks.append(fsck)
                # The boot partition is mounted read-only: a pulled plug never leaves
                # its FAT dirty, let alone changed by the repair.
                repaired = vm.ssh("journalctl -b -o cat -u 'systemd-fsck*' "
                                  "| grep -ci 'dirty bit\\|was changed' || true",
                                  timeout=60).stdout.strip()  # fmt: skip
                if repaired not in ("", "0"):
                    self.failures.append(f"boot {n}: fsck repaired the boot partition: {fsck!r}")
                failed = vm.ssh("systemctl list-units --failed --plain --no-legend", timeout=60)
                if failed.stdout.strip():
                    self.failures.append(f"boot {n}: failed units {failed.stdout.strip()}")
                log(f"boot {n}: {boots[-1]} s, setting {written}, {checked} clips play, "
                    f"fsck: {fsck!r}")  # fmt: skip
                if n == pulls:
                    break
                new = self.VALUES[1] if written == self.VALUES[0] else self.VALUES[0]
                allowed = {written, new}
                # One clip recorded whole (checked at every boot after), then one cut.
                whole = self.record(vm)
                if whole is None or not self.finished(vm, whole):
                    self.failures.append(f"boot {n}: a clip did not finish recording")
                if self.record(vm) is None:
                    self.failures.append(f"boot {n}: the clip to cut did not start")
                time.sleep(rng.uniform(0, 3))
                section, key = self.SETTING
                body = json.dumps({"changes": {f"{section}.{key}": new}}).encode()
                saving = threading.Thread(
                    target=vm.api, args=("/api/settings", body, "PUT"), daemon=True
                )
                saving.start()
                time.sleep(rng.uniform(0, 4))  # the clip records for 5 s + 4 s
                log(f"pulling the plug ({n + 1} of {pulls})")
            finally:
                vm.pull_plug()
        return self.failures


if __name__ == "__main__":
    sys.exit(main())
