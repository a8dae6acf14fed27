"""systemd's handling of one `Type=notify`, `Restart=on-failure` service, for the
updater's tests on a machine whose PID 1 is not systemd. Under qemu `make image-test`
runs the real systemd; this mirrors what the updater relies on, from systemd 252
(Debian bookworm's), src/core/service.c:

- States as `systemctl show` reports them (state_translation_table, near the top):
  SERVICE_START is ActiveState "activating"/SubState "start"; only READY=1 on the
  notify socket moves a Type=notify service on to "active"/"running"
  (service_notify_message: `if (strv_contains(tags, "READY=1"))` ... then
  service_enter_start_post); SERVICE_AUTO_RESTART is "activating"/"auto-restart";
  SERVICE_FAILED is "failed"/"failed".
- A main process that exits before READY=1 (service_sigchld_event, SERVICE_START
  branch) fails the start; with Restart=on-failure it is started again after
  RestartSec (service_enter_restart), which counts NRestarts; a restart asked for
  from outside (a job, `flush_n_restarts`) sets NRestarts back to 0. After
  StartLimitBurst failed starts the unit stays "failed".
- Every start has a new InvocationID (unit_acquire_invocation_id); MainPID is 0
  once the main process is gone, ExecMainStatus keeps its exit status.
- `restart` stops with SIGTERM (KillSignal=), SIGKILL after TimeoutStopSec."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from peercam.update.service_manager import ServiceState


class NotifyService:
    def __init__(
        self,
        command: Callable[[], list[str]],
        log: IO[str],
        env: dict[str, str] | None = None,
        restart_sec: float = 2.0,
        start_limit_burst: int = 5,
        stop_timeout: float = 20.0,
    ) -> None:
        self._command = command
        self._env = {**os.environ, **(env or {})}
        self._log = log
        self._restart_sec = restart_sec
        self._burst = start_limit_burst
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._active, self._sub = "inactive", "dead"
        self._restarts = 0
        self._failed_starts = 0
        self._invocation = ""
        self._exit_status: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._directory = tempfile.TemporaryDirectory(prefix="notify-")
        self._socket_path = str(Path(self._directory.name) / "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self._socket_path)
        self._jobs: list[str] = []
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="systemd-standin", daemon=True)
        self._thread.start()

    # --- what systemctl does ---------------------------------------------------------

    def restart(self) -> None:
        """`systemctl restart --no-block`: queued; the manager carries it out."""
        with self._lock:
            self._jobs.append("restart")
        self._wake.set()

    def state(self) -> ServiceState:
        with self._lock:
            return ServiceState(
                self._active, self._sub, self._restarts, self._invocation, self._exit_status
            )

    def main_pid(self) -> int:
        with self._lock:
            return self._process.pid if self._process is not None else 0

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout=self._stop_timeout + 5)
        self._socket.close()
        self._directory.cleanup()

    # --- the manager -------------------------------------------------------------------

    def _set(self, active: str, sub: str) -> None:
        with self._lock:
            self._active, self._sub = active, sub

    def _start(self) -> None:
        env = {**self._env, "NOTIFY_SOCKET": self._socket_path}
        process = subprocess.Popen(
            self._command(), env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        with self._lock:
            self._process = process
            self._invocation = uuid.uuid4().hex
            self._exit_status = None
            self._active, self._sub = "activating", "start"

    def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._set("deactivating", "stop-sigterm")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self._stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with self._lock:
            self._process = None
            self._exit_status = process.returncode
            self._active, self._sub = "inactive", "dead"

    def _run(self) -> None:
        restart_at: float | None = None
        while True:
            with self._lock:
                jobs, self._jobs = self._jobs, []
                closing = self._closing
            if closing:
                self._stop()
                return
            if jobs:
                self._stop()
                with self._lock:
                    self._restarts = 0  # flush_n_restarts: a job from outside
                self._failed_starts = 0
                restart_at = None
                self._start()
            if restart_at is not None and time.monotonic() >= restart_at:
                restart_at = None
                with self._lock:
                    self._restarts += 1
                self._start()
            self._read_notifications()
            process = self._process
            if process is not None and process.poll() is not None:
                with self._lock:
                    self._process = None
                    self._exit_status = process.returncode
                    was_ready = self._sub == "running"
                if process.returncode == 0 and was_ready:
                    self._set("inactive", "dead")
                    continue
                self._failed_starts += 0 if was_ready else 1
                if self._failed_starts >= self._burst:
                    self._set("failed", "failed")  # the start limit was hit
                else:
                    self._set("activating", "auto-restart")
                    restart_at = time.monotonic() + self._restart_sec
            self._wake.wait(0.05)
            self._wake.clear()

    def _read_notifications(self) -> None:
        while select.select([self._socket], [], [], 0)[0]:
            message = self._socket.recv(4096).decode(errors="replace")
            if "READY=1" in message.split("\n"):
                with self._lock:
                    if self._process is not None and self._sub == "start":
                        self._active, self._sub = "active", "running"
