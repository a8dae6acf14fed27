"""Runs the real daemon as a child process, the way a user starts it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.access import TEST_PASSWORD, Access

_SERVING = re.compile(r"^peercam: serving on (https?://\S+)$")
_REDIRECTING = re.compile(r"^peercam: redirecting (http://\S+) to HTTPS$")


class DaemonProcess:
    def __init__(
        self,
        workdir: Path,
        config: str = "",
        *args: str,
        env: dict[str, str] | None = None,
        netns: str | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        """`prefix`: a command the daemon runs under, e.g. prlimit with a unit's limits."""
        self.config_path = workdir / "peercam.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / "daemon.log"
        self.state_dir = workdir / "state"
        self._log: IO[str] = self.log_path.open("w")
        # In a test host's namespace the daemon listens on its address there.
        prefix = (["ip", "netns", "exec", netns] if netns else []) + (prefix or [])
        listen = (
            ["--host", "0.0.0.0", "--port", "8443", "--http-port", "8080"]
            if netns
            else [
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--http-port",
                "0",
                "--rtsp-port",
                "0",
                "--onvif-port",
                "0",
            ]
        )
        command = [
            *prefix, sys.executable, "-m", "peercam", "run", "--config", str(self.config_path),
            "--state-dir", str(self.state_dir), *listen, *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            # The admin password as a container would set it; a test may override it
            # (an empty one leaves the daemon without a password).
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PEERCAM_PASSWORD": TEST_PASSWORD,
                **(env or {}),
            },
        )
        self.redirect_url: str | None = None
        self.url = self._wait_for_url(timeout=30)
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        scheme = self.url.split(":", 1)[0]
        self.base = self.url.rstrip("/") if netns else f"{scheme}://127.0.0.1:{self.port}"
        self.access = Access(self.base, self.state_dir / "tls-cert.pem")
        self.stdout_lines: list[str] = []
        self._reader = threading.Thread(target=self._drain_stdout, daemon=True)
        self._reader.start()

    def _wait_for_url(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            redirecting = _REDIRECTING.match(line.strip())
            if redirecting:
                self.redirect_url = redirecting[1]
            match = _SERVING.match(line.strip())
            if match:
                return match[1]
        self.process.kill()
        raise RuntimeError(f"daemon did not start; log:\n{self.log_path.read_text()}")

    def logged(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The first match of `pattern` in the daemon's log, waited for."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the daemon's log:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def _drain_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def get(self, path: str) -> str:
        """GET `path` as the admin."""
        return self.access.urlopen(path).decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample from /metrics; 0 when the series does not exist yet."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.get("/metrics").splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            base, _, label_text = series.partition("{")
            found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if base == name and found == wanted:
                return float(value)
        return 0.0

    def terminate(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        self._log.close()
        return self.process.returncode
