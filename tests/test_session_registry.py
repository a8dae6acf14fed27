"""The session registry's limits, in process: real aiortc offers answered against the
test-pattern pipeline (no peer ever connects, none needs to). A session beyond
max_viewers is refused as TooManyViewers, one beyond a client's or a user's share as
ClientOverLimit; a closed session, or one whose answer failed, frees its place;
close_all closes every session and releases the encoders."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.exceptions import OperationError

from peercam.config import build_config
from peercam.metrics import Metrics
from peercam.pipeline import MediaPipeline, build_pipeline
from peercam.rtc.negotiation import OfferPlan, plan_offer
from peercam.rtc.registry import ClientOverLimit, SessionRegistry, TooManyViewers
from tests.whep_viewer import video_capabilities


@asynccontextmanager
async def registry_with(
    gone: list[str] | None = None, **viewers: int
) -> AsyncIterator[tuple[SessionRegistry, MediaPipeline]]:
    """A registry over a small test-pattern pipeline, with these [viewers] limits."""
    config = build_config(
        {
            "camera": {"source": "test", "size": "160x120", "fps": 15, "linger_seconds": 0},
            "video": {"codecs": ["h264", "vp8"], "h264_encoder": "libx264"},
            "audio": {"enabled": False},
            "viewers": viewers,
        }
    )
    pipeline = build_pipeline(config, Metrics())

    async def on_gone(session_id: str) -> None:
        if gone is not None:
            gone.append(session_id)

    registry = SessionRegistry(config, pipeline, Metrics(), on_gone=on_gone)
    try:
        yield registry, pipeline
    finally:
        await registry.close_all()
        await pipeline.stop()


async def offer(mime: str = "video/H264") -> OfferPlan:
    """A receive-only video offer from a real aiortc peer, planned as the daemon would."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    transceiver.setCodecPreferences([c for c in video_capabilities() if c.mimeType == mime])
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return plan_offer(sdp, ["h264", "vp8"], [])


async def test_a_session_beyond_max_viewers_is_refused_as_too_many_viewers() -> None:
    plan = await offer()
    async with registry_with(max_viewers=2) as (registry, _):
        first, answer = await registry.create(plan, "10.0.0.1", "alice")
        assert answer.startswith("v=0") and "m=video" in answer
        await registry.create(plan, "10.0.0.2", "bob")
        with pytest.raises(TooManyViewers, match=r"viewer limit reached \(2\)"):
            await registry.create(plan, "10.0.0.3", "carol")
        assert len(registry) == 2
        assert registry.get(first.id) is first


async def test_a_session_beyond_max_per_user_is_refused_as_client_over_limit() -> None:
    plan = await offer()
    async with registry_with(max_per_user=2) as (registry, _):
        # One account from several addresses (a shared login, a leaked token).
        await registry.create(plan, "10.0.0.1", "family")
        await registry.create(plan, "10.0.0.2", "family")
        with pytest.raises(ClientOverLimit, match="at most 2 viewers per user"):
            await registry.create(plan, "10.0.0.3", "family")
        assert len(registry) == 2
        # Another user is not held back by it.
        await registry.create(plan, "10.0.0.3", "admin")
        assert len(registry) == 3


async def test_sessions_with_no_owner_are_not_counted_per_user() -> None:
    plan = await offer()
    async with registry_with(max_per_user=1) as (registry, _):
        await registry.create(plan, "10.0.0.1")
        await registry.create(plan, "10.0.0.2")
        assert len(registry) == 2


async def test_a_session_beyond_max_per_client_is_refused_as_client_over_limit() -> None:
    plan = await offer()
    async with registry_with(max_per_client=2) as (registry, _):
        await registry.create(plan, "10.0.0.1", "alice")
        await registry.create(plan, "10.0.0.1", "bob")
        with pytest.raises(ClientOverLimit, match="at most 2 viewers per client"):
            await registry.create(plan, "10.0.0.1", "carol")
        await registry.create(plan, "10.0.0.2", "carol")  # another address is not held back
        assert len(registry) == 3


async def test_new_sessions_a_minute_per_client_count_closed_ones_too() -> None:
    plan = await offer()
    async with registry_with(sessions_per_minute_per_client=2) as (registry, _):
        for _ in range(2):
            session, _ = await registry.create(plan, "10.0.0.1", "alice")
            await session.close()
        assert len(registry) == 0
        with pytest.raises(ClientOverLimit, match="at most 2 new sessions a minute per client"):
            await registry.create(plan, "10.0.0.1", "alice")
        await registry.create(plan, "10.0.0.2", "alice")


async def test_a_closed_session_frees_its_place() -> None:
    plan = await offer()
    async with registry_with(max_viewers=1, max_per_user=1, max_per_client=1) as (registry, _):
        first, _ = await registry.create(plan, "10.0.0.1", "alice")
        with pytest.raises(TooManyViewers):
            await registry.create(plan, "10.0.0.1", "alice")
        await first.close()
        assert len(registry) == 0
        assert registry.get(first.id) is None
        second, _ = await registry.create(plan, "10.0.0.1", "alice")
        assert registry.get(second.id) is second
        assert second.id != first.id


async def test_a_session_whose_answer_fails_takes_no_place() -> None:
    # The plan names H.264, the offer holds only VP8: aiortc cannot answer it.
    plan = dataclasses.replace(await offer("video/VP8"), video_codec="h264")
    async with registry_with(max_viewers=1) as (registry, _):
        with pytest.raises(OperationError):
            await registry.create(plan, "10.0.0.1", "alice")
        assert len(registry) == 0
        await registry.create(await offer(), "10.0.0.1", "alice")
        assert len(registry) == 1


async def test_close_all_closes_every_session_and_releases_the_encoders() -> None:
    gone: list[str] = []
    async with registry_with(gone) as (registry, pipeline):
        h264 = await offer()
        vp8 = await offer("video/VP8")
        sessions = [
            (await registry.create(plan, f"10.0.0.{n}", "alice"))[0]
            for n, plan in enumerate([h264, h264, vp8], start=1)
        ]
        assert pipeline.producer("h264").running and pipeline.producer("vp8").running
        await registry.close_all()
        assert len(registry) == 0
        assert all(registry.get(s.id) is None for s in sessions)
        assert all(s.pc.connectionState == "closed" for s in sessions)
        assert sorted(gone) == sorted(s.id for s in sessions)  # each reported gone, once
        assert not pipeline.producer("h264").running
        assert not pipeline.producer("vp8").running
        assert not any(source.running for source in pipeline.sources())


async def test_get_of_an_unknown_id_is_none() -> None:
    async with registry_with() as (registry, _):
        assert registry.get("no-such-session") is None
        session, _ = await registry.create(await offer(), "10.0.0.1", "alice")
        assert registry.get(session.id) is session
        assert registry.get(session.id[:-1]) is None
