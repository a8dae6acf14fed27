"""Outputs run the way the daemon runs them: the real Daemon starts the catalog's
outputs in order and its stop() stops them in reverse; when one fails to start, start
raises, nothing after it starts, and stop() stops it and those started before it. The outputs
take their stream from a fake pipeline (anything with a `stream(codec)` async context
manager) that logs each take and release; the daemon is real, on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from peercam.config import Config, build_config
from peercam.daemon import Daemon
from peercam.outputs.catalog import FACTORIES
from peercam.outputs.output import Output, OutputContext

WITHIN = 10.0  # generous bound, only so that a failure cannot hang


class FakePipeline:
    """Hands out numbered streams of nothing, and logs when each is taken and left."""

    def __init__(self, log: list[str]) -> None:
        self._log = log
        self._taken = 0
        self.held: set[int] = set()

    @asynccontextmanager
    async def stream(self, codec: str) -> AsyncIterator[int]:
        self._taken += 1
        number = self._taken
        self._log.append(f"take {codec} #{number}")
        self.held.add(number)
        try:
            yield number
        finally:
            self.held.discard(number)
            self._log.append(f"release {codec} #{number}")


class StreamingOutput:
    """An output written against the contract only: it takes its stream when started
    and leaves it when stopped."""

    def __init__(
        self, label: str, pipeline: FakePipeline, log: list[str], fail_start: bool = False
    ) -> None:
        self._label = label
        self._pipeline = pipeline
        self._log = log
        self._fail_start = fail_start
        self._streams = AsyncExitStack()

    @property
    def name(self) -> str:
        return f"output {self._label}"

    async def start(self) -> None:
        self._log.append(f"start {self._label}")
        if self._fail_start:
            raise RuntimeError(f"{self._label} cannot start")
        await self._streams.enter_async_context(self._pipeline.stream("h264"))

    async def stop(self) -> None:
        await self._streams.aclose()
        self._log.append(f"stop {self._label}")


def daemon_config(tmp_path: Path) -> Config:
    return build_config(
        {
            "camera": {"source": "test", "size": "160x120", "fps": 15},
            "video": {"codecs": ["h264"], "h264_encoder": "libx264"},
            "audio": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0, "tls": False, "state_dir": str(tmp_path)},
            "rtsp": {"enabled": False},
        }
    )


@contextmanager
def in_the_catalog(outputs: list[StreamingOutput]) -> Iterator[None]:
    """The daemon builds `outputs` from the catalog, after the catalog's own (which the
    config leaves unconfigured: they build nothing)."""

    def build(context: OutputContext) -> list[Output]:
        return list(outputs)

    FACTORIES.append(build)
    try:
        yield
    finally:
        FACTORIES.remove(build)


async def test_the_daemon_starts_outputs_in_order_and_stops_them_in_reverse(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    pipeline = FakePipeline(log)
    outputs = [StreamingOutput(label, pipeline, log) for label in ("A", "B", "C")]
    daemon = Daemon(daemon_config(tmp_path))
    with in_the_catalog(outputs):
        try:
            await asyncio.wait_for(daemon.start(), WITHIN)
            assert log == [
                "start A",
                "take h264 #1",
                "start B",
                "take h264 #2",
                "start C",
                "take h264 #3",
            ]
            assert pipeline.held == {1, 2, 3}
            del log[:]
        finally:
            await asyncio.wait_for(daemon.stop(), WITHIN)
    # The last started stops first, each releasing its stream as it stops.
    assert log == [
        "release h264 #3",
        "stop C",
        "release h264 #2",
        "stop B",
        "release h264 #1",
        "stop A",
    ]
    assert pipeline.held == set()


async def test_after_an_output_fails_to_start_the_daemons_stop_stops_those_started(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    pipeline = FakePipeline(log)
    first = StreamingOutput("A", pipeline, log)
    failing = StreamingOutput("B", pipeline, log, fail_start=True)
    never = StreamingOutput("C", pipeline, log)
    daemon = Daemon(daemon_config(tmp_path))
    with in_the_catalog([first, failing, never]):
        try:
            with pytest.raises(RuntimeError, match="B cannot start"):
                await asyncio.wait_for(daemon.start(), WITHIN)
        finally:
            # Daemon.start's contract: call stop after a failed start too.
            await asyncio.wait_for(daemon.stop(), WITHIN)
    # Nothing after the failure is started; the one that failed is stopped too (what
    # it took before failing is released), then the one before it, its stream released.
    assert log == [
        "start A", "take h264 #1", "start B", "stop B", "release h264 #1", "stop A",
    ]  # fmt: skip
    assert pipeline.held == set()
