"""The daemon's service, as the updater sees it: restart it and watch whether it
comes up. On the camera that is systemd, asked through systemctl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ServiceState:
    active: str  # systemd's ActiveState: active, activating, deactivating, failed, inactive
    sub: str  # SubState: running, start, auto-restart, dead, failed...
    restarts: int  # NRestarts: starts systemd made by itself after a failure
    invocation: str  # InvocationID: new at every start
    exit_status: int | None  # the main process's last exit status, if it exited

    @property
    def ready(self) -> bool:
        # Type=notify: "active" only once the daemon sent READY=1.
        return self.active == "active" and self.sub == "running"

    @property
    def failing(self) -> bool:
        return self.active == "failed" or self.sub in ("auto-restart", "failed", "dead")


class ServiceManager(Protocol):
    def restart(self) -> None: ...

    def state(self) -> ServiceState: ...


class SystemdService:
    def __init__(self, unit: str = "peercam.service") -> None:
        self.unit = unit

    def restart(self) -> None:
        # --no-block: the updater watches the start itself, with its own deadline and
        # its own reading of a failure (a start job's error says less).
        self._systemctl("reset-failed", self.unit)
        self._systemctl("restart", "--no-block", self.unit)

    def state(self) -> ServiceState:
        shown = self._systemctl(
            "show", self.unit,
            "--property=ActiveState,SubState,NRestarts,InvocationID,MainPID,ExecMainCode,"
            "ExecMainStatus",
        )  # fmt: skip
        values = dict(line.partition("=")[::2] for line in shown.splitlines())
        status = values.get("ExecMainStatus", "")
        # MainPID is 0 once the process is gone; ExecMainCode is 0 until it exits.
        exited = values.get("MainPID") == "0" and values.get("ExecMainCode", "0") != "0"
        exited = exited and status.isdigit()
        return ServiceState(
            values.get("ActiveState", ""),
            values.get("SubState", ""),
            int(values.get("NRestarts", "0") or 0),
            values.get("InvocationID", ""),
            int(status) if exited else None,
        )

    @staticmethod
    def _systemctl(*args: str) -> str:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, check=False, timeout=60
        )
        if done.returncode != 0:
            raise OSError(f"systemctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout
