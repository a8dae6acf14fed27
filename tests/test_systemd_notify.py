"""The daemon speaks systemd's notify protocol: READY when serving, WATCHDOG pings
from the event loop while it runs, STOPPING on the way out."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from pathlib import Path

from peercam.service.notify import SystemdNotifier
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


async def test_a_blocked_event_loop_stops_the_watchdog_pings(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    received: list[tuple[float, str]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        done = threading.Event()

        def listen() -> None:  # a thread: the loop under test is about to stop
            while not done.is_set():
                try:
                    message = sock.recv(512).decode()
                except TimeoutError:
                    continue
                received.append((time.monotonic(), message))

        listener = threading.Thread(target=listen)
        listener.start()
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
        notifier.ready("test")  # pings every 50 ms
        await asyncio.sleep(0.5)
        blocked_at = time.monotonic()
        time.sleep(1.5)  # noqa: ASYNC251 (the fault under test: a handler that blocks)
        unblocked_at = time.monotonic()
        await asyncio.sleep(0.5)
        await notifier.stopping()
        done.set()
        listener.join()
    pings = [at for at, message in received if message == "WATCHDOG=1"]
    before = [at for at in pings if at < blocked_at]
    during = [at for at in pings if blocked_at + 0.06 < at < unblocked_at]
    after = [at for at in pings if at > unblocked_at]
    assert len(before) >= 5 and len(after) >= 5, (len(before), len(after))
    # systemd (WatchdogSec=0.1 s here) would have restarted the daemon in this gap.
    assert during == [], during
