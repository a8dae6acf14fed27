"""SIGTERM with viewers connected: every peer closed, every task ended, exit 0."""

from __future__ import annotations

import asyncio
import signal

from tests.conftest import StartDaemon
from tests.whep_viewer import WhepViewer


async def test_sigterm_with_viewers_exits_0_and_leaves_no_tasks(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    async with WhepViewer(daemon.access) as first, WhepViewer(daemon.access) as second:
        await first.video_frames(10)
        await second.video_frames(10)
        assert daemon.metric("peercam_viewers") == 2
        daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.process.wait, 20)
    assert code == 0
    log = daemon.log()
    assert "stopped cleanly: no tasks left" in log, log
    assert "Traceback" not in log
    assert log.count("closed\n") >= 2  # both sessions were closed, not abandoned
    assert "h264 encoder stopped" in log and "test-pattern source stopped" in log


async def test_sigint_when_idle_exits_0(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    daemon.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(daemon.process.wait, 20) == 0
    assert "stopped cleanly: no tasks left" in daemon.log()
