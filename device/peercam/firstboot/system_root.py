"""The system first boot changes: `/` on the camera; a temporary directory in tests.

Every file first boot writes goes through `SystemRoot.at`, so the same steps run
against the camera's own root at boot and against a scratch tree in a test, and
never touch the machine running the tests. Only a live root also changes the running
system (the kernel's hostname, units started now)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Debian installs packaged units here (usrmerge makes /lib and /usr/lib the same).
UNIT_DIR = "/lib/systemd/system"


@dataclass(frozen=True)
class SystemRoot:
    path: Path
    live: bool = False

    @staticmethod
    def running() -> SystemRoot:
        return SystemRoot(Path("/"), live=True)

    def at(self, absolute: str) -> Path:
        """`absolute` (a path on the camera) inside this root."""
        return self.path / absolute.lstrip("/")

    def enable(self, unit: str, target: str = "multi-user.target") -> None:
        """Enable `unit` as `systemctl enable` does for `WantedBy=target`; on a live
        system also start it now (boot is under way, so the running transaction
        would not pick it up)."""
        wants = self.at(f"/etc/systemd/system/{target}.wants")
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        template = unit.split("@", 1)[0] + "@.service" if "@" in unit else unit
        if not link.is_symlink():
            link.symlink_to(f"{UNIT_DIR}/{template}")
        if self.live:
            self._systemctl("daemon-reload")
            self._systemctl("start", "--no-block", unit)

    def disable(self, unit: str, target: str = "multi-user.target") -> None:
        link = self.at(f"/etc/systemd/system/{target}.wants/{unit}")
        if link.is_symlink() or link.exists():
            link.unlink()
            if self.live:
                self._systemctl("daemon-reload")

    def set_kernel_hostname(self, name: str) -> None:
        if self.live:
            socket.sethostname(name)

    def _systemctl(self, *arguments: str) -> None:
        if shutil.which("systemctl") is None:
            return
        result = subprocess.run(
            ["systemctl", *arguments], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            logger.warning("systemctl %s: %s", " ".join(arguments), result.stderr.strip())

    def owner_of(self, user: str) -> tuple[int, int] | None:
        """The uid and gid of the service user, from this root's passwd file: files
        first boot writes into the state directory (as root) must stay readable by
        the daemon."""
        try:
            lines = self.at("/etc/passwd").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == user:
                return int(fields[2]), int(fields[3])
        return None

    def give_to(
        self, user: str, *paths: Path, group_only: bool = False, mode: int | None = None
    ) -> None:
        """Chown `paths` to `user` (or to root and `user`'s group), when run as root
        and the user exists, and set their `mode`. Root does this in directories the
        service user owns, so each path is opened without following a symlink and
        changed through that descriptor: a link or a FIFO the daemon left there
        (pointing at /etc/shadow) is passed over, never followed."""
        owner = self.owner_of(user) if os.geteuid() == 0 else None
        if owner is None and mode is None:
            return
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as error:  # ELOOP: a symlink
                logger.warning("%s left as it is: %s", path, error.strerror or error)
                continue
            try:
                kind = os.fstat(fd).st_mode
                if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
                    logger.warning("%s left as it is: not a file or directory", path)
                    continue
                if owner is not None:
                    uid, gid = owner
                    os.fchown(fd, 0 if group_only else uid, gid)
                if mode is not None:
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
