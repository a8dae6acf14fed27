"""The real daemon in a thread of the test process, for the tests that must reach
into it: gpiozero's MockFactory pins exist only in the process that made them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from peercam.auth.store import CredentialStore
from peercam.config import Config, build_config
from peercam.daemon import Daemon
from peercam.service.state_dir import state_directory
from tests.access import TEST_PASSWORD, Access


def pattern_config(
    state_dir: Path, size: str = "320x240", camera: dict[str, Any] | None = None, **sections: Any
) -> Config:
    """A daemon on loopback showing the test pattern at `size` and 15 fps (`camera`
    adds to its camera section), without audio unless `sections` says otherwise."""
    server = {"host": "127.0.0.1", "port": 0, "redirect_http": False, "state_dir": str(state_dir)}
    return build_config(
        {
            "server": server,
            "camera": {"source": "test", "size": size, "fps": 15, **(camera or {})},
            "audio": {"enabled": False},
            **sections,
        }
    )


class InProcessDaemon:
    def __init__(self, config: Config) -> None:
        """`config` names a fresh server.state_dir; the admin password is the tests' own.
        RTSP and ONVIF listen on free ports unless the config names them."""
        free = {
            name: section.model_copy(update={"port": 0})
            for name, section in (("rtsp", config.rtsp), ("onvif", config.onvif))
            if "port" not in section.model_fields_set
        }
        config = config.model_copy(update=free)
        self.config = config
        state_dir = state_directory(config.server.state_dir)
        CredentialStore(state_dir).set_password("admin", TEST_PASSWORD, "admin")
        self.access = Access("", state_dir / "tls-cert.pem")
        self.daemon: Daemon | None = None
        self.base = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="daemon", daemon=True)

    def __enter__(self) -> InProcessDaemon:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.daemon = Daemon(self.config)
        await self.daemon.start()
        scheme = "https" if self.daemon.certificate else "http"
        self.base = self.access.base = f"{scheme}://127.0.0.1:{self.daemon.port}"
        self._ready.set()
        await self._stopping.wait()
        await self.daemon.stop()

    def call(self, function: object) -> None:
        """Run `function` on the daemon's event loop (its state is not thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function)  # type: ignore[arg-type]
