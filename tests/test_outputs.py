"""The output seam: how an output takes a stream, and how outputs are built from the
config and started and stopped in order, against the real pipeline (test pattern)."""

from __future__ import annotations

import asyncio

from peercam.config import Config, build_config
from peercam.events import EventBus
from peercam.metrics import Metrics
from peercam.outputs.catalog import FACTORIES, build_outputs
from peercam.outputs.output import Output, OutputContext
from peercam.pipeline import MediaPipeline, build_pipeline
from peercam.republish.rtp_forward import RtpForwarder
from peercam.republish.whip_publisher import WhipPublisher

SETTINGS: dict[str, dict[str, object]] = {
    "camera": {"source": "test", "size": "320x240", "fps": 15},
    "video": {"codecs": ["h264"]},
    "audio": {"enabled": False},
}


def pipeline_for(config: Config) -> MediaPipeline:
    pipeline = build_pipeline(config, Metrics())
    pipeline.linger = 0  # sources stop as soon as nobody needs them
    return pipeline


async def test_a_stream_starts_the_encoder_and_leaving_it_stops_it() -> None:
    pipeline = pipeline_for(build_config(SETTINGS))
    producer = pipeline.producer("h264")
    async with pipeline.stream("h264") as subscription:
        assert producer.running
        frame = await asyncio.wait_for(subscription.get(), 10)
        assert frame.keyframe  # a new subscriber starts at a keyframe
    # Nobody else watches: leaving released the encoder and the camera.
    assert not producer.running
    assert not any(source.running for source in pipeline.sources())
    await pipeline.stop()


async def test_a_stream_left_by_an_exception_is_released_too() -> None:
    pipeline = pipeline_for(build_config(SETTINGS))
    try:
        async with pipeline.stream("h264"):
            raise RuntimeError("an output failed")
    except RuntimeError:
        pass
    assert not pipeline.producer("h264").running
    await pipeline.stop()


async def test_outputs_are_built_from_their_config_sections() -> None:
    config = build_config(
        {
            **SETTINGS,
            "republish": {
                "whip": [{"url": "https://a.example/whip"}, {"url": "https://b.example/whip"}],
                "rtp": [{"host": "127.0.0.1", "video_port": 5004}],
            },
        }
    )
    pipeline = pipeline_for(config)
    outputs = build_outputs(OutputContext(config, pipeline, EventBus()))
    assert [type(o) for o in outputs] == [WhipPublisher, WhipPublisher, RtpForwarder]
    assert [o.name for o in outputs] == [
        "WHIP publisher to https://a.example/whip",
        "WHIP publisher to https://b.example/whip",
        "RTP forwarder to 127.0.0.1:5004",
    ]
    # Nothing configured, nothing built.
    assert build_outputs(OutputContext(build_config(SETTINGS), pipeline, EventBus())) == []
    await pipeline.stop()


class CountingOutput:
    """An output written only against the contract: counts the frames it is sent."""

    def __init__(self, context: OutputContext, log: list[str]) -> None:
        self._pipeline = context.pipeline
        self._log = log
        self._task: asyncio.Task[None] | None = None
        self.frames = 0

    @property
    def name(self) -> str:
        return "frame counter"

    async def start(self) -> None:
        self._log.append("start")
        self._task = asyncio.create_task(self._count())

    async def _count(self) -> None:
        async with self._pipeline.stream("h264") as subscription:
            while True:
                await subscription.get()
                self.frames += 1

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._log.append("stop")


async def test_a_new_output_needs_only_its_module_and_a_line_in_the_catalog() -> None:
    config = build_config(SETTINGS)
    pipeline = pipeline_for(config)
    log: list[str] = []
    counters: list[CountingOutput] = []

    def build(context: OutputContext) -> list[Output]:
        counters.append(CountingOutput(context, log))
        return list(counters)

    FACTORIES.append(build)
    try:
        outputs = build_outputs(OutputContext(config, pipeline, EventBus()))
    finally:
        FACTORIES.remove(build)
    assert outputs == counters
    for output in outputs:
        await output.start()
    for _ in range(100):
        if counters[0].frames >= 5:
            break
        await asyncio.sleep(0.1)
    assert counters[0].frames >= 5
    for output in reversed(outputs):
        await output.stop()
    assert log == ["start", "stop"]
    assert not pipeline.producer("h264").running  # its stream was released on stop
    await pipeline.stop()
