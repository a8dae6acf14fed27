from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from tests import netns
from tests.daemon_process import DaemonProcess

StartDaemon = Callable[..., DaemonProcess]

SMALL = """
[camera]
source = "test"
size = "640x480"
fps = 30
"""

# The test pattern, small and slow enough for a loaded 2-core machine; tests append
# their own sections after it.
CAMERA_320 = """
[camera]
source = "test"
size = "320x240"
fps = 15
"""

# For tests that open sessions by the hundred from one address: the per-client
# limits (tested in test_whep.py) stay out of their way. [viewers] comes last: tests
# append more of its keys.
MANY_SESSIONS = """
[camera]
source = "test"
size = "320x240"
fps = 15
[server]
max_connections_per_address = 1000
[viewers]
max_viewers = 1000
max_per_client = 1000
max_per_user = 1000
sessions_per_minute_per_client = 10000
"""


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """Start real daemons (stopped at the end of the test): start_daemon(config, *flags)."""
    started: list[DaemonProcess] = []

    def start(
        config: str = SMALL,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> DaemonProcess:
        workdir = tmp_path / f"daemon{len(started)}"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, config, *args, env=env, prefix=prefix)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.terminate()


@pytest.fixture
def network() -> Iterator[None]:
    """The camera, viewer and router namespaces of tests/netns.py, for one test
    (skipped where they cannot be made: not root, no iproute2)."""
    if netns.why_unavailable() is not None:
        pytest.skip(str(netns.why_unavailable()))
    with netns.network():
        yield


@pytest.fixture
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon()


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins for every device made in this process during the test."""
    factory = MockFactory()
    previous = Device.pin_factory
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous
