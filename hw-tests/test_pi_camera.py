"""The Pi camera and its hardware H.264 encoder, on a real Pi (Pi 4, 3 or Zero 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

import pytest

from peercam.capture.picamera2_camera import Picamera2Camera, PiCameraSettings, PiCapture
from peercam.h264_bitstream import PPS, SPS, nal_type, nal_units
from peercam.media import CapturedEncoded

pytestmark = pytest.mark.hardware


async def capture(
    module: ModuleType, width: int, height: int, seconds: float, keyframe_at: float | None = None
) -> tuple[list[CapturedEncoded], int | None]:
    frames: list[CapturedEncoded] = []

    def sink(item: PiCapture) -> None:
        if isinstance(item, CapturedEncoded):
            frames.append(item)

    settings = PiCameraSettings(0, width, height, 30, 4_000_000, keyframe_interval=10.0)
    camera = Picamera2Camera(settings, module)
    camera.set_outputs(raw=False, encoded=True)
    camera.start(sink)
    requested_after: int | None = None
    try:
        if keyframe_at is not None:
            await asyncio.sleep(keyframe_at)
            requested_after = len(frames)
            camera.request_keyframe()
            await asyncio.sleep(seconds - keyframe_at)
        else:
            await asyncio.sleep(seconds)
    finally:
        await camera.stop()
    return frames, requested_after


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 720)])
async def test_camera_starts_with_sps_pps_on_every_idr(
    hardware_encoder: ModuleType, width: int, height: int
) -> None:
    frames, _ = await capture(hardware_encoder, width, height, seconds=4)
    assert len(frames) >= 90
    assert frames[0].keyframe
    for frame in frames:
        if frame.keyframe:
            types = [nal_type(n) for n in nal_units(frame.data) if n]
            assert SPS in types and PPS in types


async def test_the_sps_says_constrained_baseline_as_the_sdp_does(
    hardware_encoder: ModuleType,
) -> None:
    # peercam asks picamera2 for "constrained baseline" and answers browsers with
    # profile-level-id 42e01f; the firmware's SPS must agree (profile_idc 66 with
    # constraint_set1), at level 4.0 for 720p30 (picamera2's default level).
    frames, _ = await capture(hardware_encoder, 1280, 720, seconds=2)
    sps = next(
        n for f in frames if f.keyframe for n in nal_units(f.data) if n and nal_type(n) == SPS
    )
    profile_idc, constraints, level_idc = sps[1], sps[2], sps[3]
    print(f"SPS profile_idc={profile_idc} constraints={constraints:#04x} level_idc={level_idc}")
    assert profile_idc == 66 and constraints & 0x40 and level_idc == 40


async def test_hardware_encoder_keeps_the_frame_rate_for_60_seconds(
    hardware_encoder: ModuleType,
) -> None:
    frames, _ = await capture(hardware_encoder, 1280, 720, seconds=62)
    span = frames[-1].captured_at - frames[0].captured_at
    fps = (len(frames) - 1) / span
    print(f"hardware H.264 720p: {len(frames)} frames in {span:.1f} s = {fps:.2f} fps")
    assert 29.0 <= fps <= 31.0


async def test_a_keyframe_request_yields_an_idr_within_two_frames(
    hardware_encoder: ModuleType,
) -> None:
    frames, requested_after = await capture(hardware_encoder, 1280, 720, 5.0, keyframe_at=3.0)
    assert requested_after is not None
    following = [f.keyframe for f in frames[requested_after : requested_after + 3]]
    print(f"keyframe flags of the 3 frames after the request: {following}")
    assert any(following)


def test_daemon_cpu_with_five_viewers(hardware_encoder: ModuleType, tmp_path: Path) -> None:
    """Prints the daemon's CPU with 5 viewers on the hardware path; asserts they all
    receive video at full rate (figures are for the note, not a pass/fail threshold)."""
    from bench.cpu_per_viewer import Receivers, sample
    from bench.processes import start_peercam, stop
    from bench.systems import running_peercam

    config = tmp_path / "peercam.toml"
    config.write_text(
        '[camera]\nsource = "picamera2"\nsize = "1280x720"\n[video]\ncodecs = ["h264"]\n'
    )
    daemon, access = start_peercam(config)
    running = running_peercam(daemon, access, "H264")
    receivers = Receivers(running.receiver_args)
    try:
        receivers.add(5)
        measured = sample(running, receivers, 10)
        print(f"daemon CPU with 5 viewers, 720p30 hardware H.264: {measured.cpu_percent:.1f} %")
        assert measured.slowest_viewer_kbps > 100
        assert measured.slowest_viewer_fps >= 25
    finally:
        receivers.close()
        stop(daemon)
