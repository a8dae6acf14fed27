"""SSH from the boot partition: off unless asked for, and then by key only.

A camera on a home network with a password login over SSH is one weak password away
from being someone else's; so `ssh = on` needs `ssh_key` (root's authorized key, and
sshd's default refuses root passwords)."""

from __future__ import annotations

import re

from peercam.firstboot.system_root import SystemRoot
from peercam.service.private_file import write_private

SSH_UNIT = "ssh.service"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
_KEY = re.compile(
    r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$"
)
_ON = {"on", "yes", "true", "1", "enabled"}
_OFF = {"off", "no", "false", "0", "disabled", ""}


def apply_ssh(values: dict[str, str], root: SystemRoot) -> list[str]:
    if "ssh" not in values and "ssh_key" not in values:
        return []
    switch = values.get("ssh", "off").strip().lower()
    if switch not in _ON | _OFF:
        return [f"ssh {switch[:20]!r} not understood (use on or off): SSH stays off"]
    problems: list[str] = []
    key = values.get("ssh_key", "").strip()
    if key:
        if _KEY.match(key):
            _authorize(root, key)
        else:
            problems.append("ssh_key is not a public key line such as `ssh-ed25519 AAAA… me@pc`")
    if switch in _OFF:
        root.disable(SSH_UNIT)
        return problems
    if not root.at(AUTHORIZED_KEYS).exists():
        return [
            *problems,
            "ssh = on needs ssh_key (password logins over SSH are off): SSH stays off",
        ]
    root.enable(SSH_UNIT)
    return problems


def _authorize(root: SystemRoot, key: str) -> None:
    path = root.at(AUTHORIZED_KEYS)
    present = path.read_text().splitlines() if path.exists() else []
    if key not in present:
        write_private(path, ("\n".join([*present, key]) + "\n").encode())
