"""The daemon speaks systemd's notify protocol: READY when serving, WATCHDOG pings
from the event loop while it runs, STOPPING on the way out."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.conftest import StartDaemon


def test_ready_watchdog_and_stopping_reach_a_notify_socket(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        daemon = start_daemon(
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}  # pings every 0.2 s
        )
        ready = sock.recv(512).decode()
        assert ready.startswith("READY=1\nSTATUS=serving on https://127.0.0.1:"), ready
        started = time.monotonic()
        pings = [sock.recv(512).decode() for _ in range(5)]
        assert pings == ["WATCHDOG=1"] * 5
        assert time.monotonic() - started < 2.5  # at half the watchdog period
        daemon.process.send_signal(signal.SIGTERM)
        messages = []
        while (message := sock.recv(512).decode()) != "STOPPING=1":
            messages.append(message)
        assert set(messages) <= {"WATCHDOG=1"}
        assert daemon.process.wait(20) == 0
