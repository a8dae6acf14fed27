"""Boot a built image under qemu-system-aarch64 and check it from outside, as a user
would: `make image-test`.

A peercam.txt is written onto the image's boot partition first (mtools, at the
partition's offset: no mounting). The VM is `-M virt` under TCG with the image's own
kernel and initramfs (taken from that partition; qemu cannot run a Pi's boot ROM) and
the image as a virtio disk; user-mode port forwards reach the daemon and SSH (which
the card turns on, with a key made for the run). Checks: /healthz, a WHEP offer
answered with H.264, the card's bad line reported to the admin; over SSH, systemd runs
peercam as a ready notify service and first boot disabled itself, with the card's
hostname; the password gone from the card (after the plug is pulled) and the root
partition grown to the disk.
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
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription

FAT_OFFSET = 8192 * 512  # build.sh puts the boot partition at 4 MiB
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
"""
EXPECTED = [
    "Type=notify", "ActiveState=active", "SubState=running", "NRestarts=0",
    "firstboot=disabled", "ssh=enabled", "hostname=qemucam", "owner=peercam",
]  # fmt: skip


def check_inside(key: Path, port: int) -> list[str]:
    command = [
        "ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "BatchMode=yes",
        "root@127.0.0.1", INSIDE,
    ]  # fmt: skip
    for _ in range(10):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            break
        time.sleep(5)
    else:
        return [f"ssh into the VM failed: {result.stderr.strip()}"]
    lines = result.stdout.split()
    log("inside: " + " ".join(lines))
    return [f"inside the VM: expected {line}" for line in EXPECTED if line not in lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="the .img or .img.xz build.sh made")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for boot")
    parser.add_argument("--keep", type=Path, help="keep the console log here")
    args = parser.parse_args()
    disk_id = Path(str(args.image).removesuffix(".xz") + ".disk-id").read_text().strip()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as name:
        work = Path(name)
        disk = work / "disk.img"
        if args.image.suffix == ".xz":
            with lzma.open(args.image) as source, disk.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        else:
            shutil.copyfile(args.image, disk)
        built_size = disk.stat().st_size
        # A bigger card than the image: first boot grows the root partition into it.
        with disk.open("r+b") as grow:
            grow.truncate(built_size + 1024 * 2**20)
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
        mtools(disk, "mcopy", kernel, str(work / "vmlinuz"))
        mtools(disk, "mcopy", initrd, str(work / "initrd.img"))
        return boot_and_check(work, disk, disk_id, built_size, args)


def boot_and_check(
    work: Path, disk: Path, disk_id: str, built_size: int, args: argparse.Namespace
) -> int:
    port, ssh_port = free_port(), free_port()
    console = work / "console.log"
    qemu = [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
        "-kernel", str(work / "vmlinuz"), "-initrd", str(work / "initrd.img"),
        "-append", f"root=PARTUUID={disk_id}-02 rootfstype=ext4 rootwait console=ttyAMA0"
        " systemd.show_status=1",
        "-drive", f"if=none,file={disk},format=raw,id=card",
        "-device", "virtio-blk-pci,drive=card",
        "-netdev",
        f"user,id=net,hostfwd=tcp:127.0.0.1:{port}-:8443,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net",
        "-rtc", "base=utc", "-serial", f"file:{console}", "-display", "none",
        "-monitor", "none", "-no-reboot",
    ]  # fmt: skip
    log(f"booting under qemu (TCG); the daemon will be at https://127.0.0.1:{port}")
    started = time.monotonic()
    vm = subprocess.Popen(qemu, stdin=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{port}"
    failures: list[str] = []
    try:
        while True:
            if vm.poll() is not None:
                raise SystemExit(f"qemu exited ({vm.returncode}):\n{console.read_text()[-3000:]}")
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"no /healthz after {args.timeout:.0f} s")
            try:
                status, body = request(base + "/healthz")
            except (OSError, urllib.error.URLError):
                status = 0
            if status == 200:
                break
            time.sleep(3)
        boot_seconds = time.monotonic() - started
        log(f"/healthz answered {json.loads(body)} after {boot_seconds:.0f} s")
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
        # systemd's status lines, without their colours.
        text = re.sub(r"\x1b\[[0-9;]*m", "", console.read_text(errors="replace"))
        for pattern in (r"Finished peercam-firstboot", r"qemucam login:"):
            if not re.search(pattern, text):
                failures.append(f"console shows no {pattern!r}")
        failures += check_inside(work / "key", ssh_port)
    finally:
        vm.terminate()
        vm.wait(timeout=60)
        if args.keep:
            shutil.copyfile(console, args.keep)
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
    print(json.dumps({"boot_to_healthz_s": round(boot_seconds), "failures": failures}))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
