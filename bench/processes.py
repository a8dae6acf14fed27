"""Starting and stopping the servers a benchmark measures, each as a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.access import TEST_PASSWORD, Access

ROOT = Path(__file__).resolve().parent.parent
# Where the servers listen unless a benchmark needs them reachable from another
# network namespace (bench/narrow_link.py).
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    command: list[str], marker: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start `command` and return once a line of its output contains `marker`."""
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert server.stdout is not None
    for line in server.stdout:
        if marker in line:
            return server
    raise RuntimeError(f"{' '.join(command[:4])} did not start")


def start_peercam(
    config: Path, env: dict[str, str] | None = None, rtsp_port: int = 0, host: str = LOOPBACK
) -> tuple[subprocess.Popen[str], Access]:
    """The daemon with `config` on a free port of `host`, as the tests start it (HTTPS,
    the tests' admin password, state next to the config): (process, access). RTSP on
    `rtsp_port` (0: any free one)."""
    port = free_port()
    state = config.parent / "state"
    command = [sys.executable, "-m", "peercam", "run", "--config", str(config),
               "--host", host, "--port", str(port), "--http-port", "0",
               "--rtsp-port", str(rtsp_port), "--onvif-port", "0",
               "--state-dir", str(state)]  # fmt: skip
    server = start_server(command, "serving on", {"PEERCAM_PASSWORD": TEST_PASSWORD, **(env or {})})
    return server, Access(f"https://{host}:{port}", state / "tls-cert.pem")


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
