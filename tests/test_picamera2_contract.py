"""peercam against the real picamera2 (0.3.38 from PyPI), with only its C++ bindings
faked (tests/picamera2_contract/README.md says what the fakes do and do not model).

The stand-in in tests/standins is ours and agrees with us by construction; this runs
our calls through picamera2's own classes: the encoder's keywords and the V4L2
controls they become, our Output subclass, frames from picamera2's processing thread
to our sink, FrameRate becoming FrameDurationLimits, our YUV420 un-padding on
picamera2's MappedArray, the size libcamera settles on, and `peercam check` opening
each camera it lists.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np
import pytest

from peercam.capture.picamera2_camera import Picamera2Camera, PiCameraSettings, import_picamera2
from peercam.check import format_report, hardware_report
from peercam.config import build_config
from peercam.media import CapturedEncoded, CapturedPreview, CapturedVideo
from tests.picamera2_contract import load, saved_modules, unload
from tests.picamera2_contract.libav import libav_h264_encoder
from tests.picamera2_contract.libcamera._libcamera import (
    CameraSpec,
    SensorMode,
    known_picture,
    manager,
)

# The modes `rpicam-hello --list-cameras` lists for these sensors; Ids as a Pi 4 (a
# CM4 for the second CSI port) names them.
IMX708 = CameraSpec(
    "/base/soc/i2c0mux/i2c@1/imx708@1a",
    "imx708",
    [
        SensorMode("SRGGB10_CSI2P", 1536, 864, 120.13),
        SensorMode("SRGGB10_CSI2P", 2304, 1296, 56.03),
        SensorMode("SRGGB10_CSI2P", 4608, 2592, 14.35),
    ],
)
IMX219 = CameraSpec(
    "/base/soc/i2c0mux/i2c@0/imx219@10",
    "imx219",
    [
        SensorMode("SRGGB10_CSI2P", 640, 480, 103.33),
        SensorMode("SRGGB10_CSI2P", 1640, 1232, 41.85),
        SensorMode("SRGGB10_CSI2P", 1920, 1080, 47.57),
        SensorMode("SRGGB10_CSI2P", 3280, 2464, 21.19),
    ],
)
# A UVC webcam: libcamera lists it too, with only its compressed format for the raw
# role and no sensor modes.
WEBCAM = CameraSpec(
    "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:0825",
    "UVC Camera (046d:0825)",
    [
        SensorMode("MJPEG", 640, 480, 30.0),
        SensorMode("MJPEG", 1280, 720, 30.0),
        SensorMode("MJPEG", 1920, 1080, 30.0),
    ],
    usb=True,
)

# picamera2's own preview thread (null_preview.py:63), not ours.
pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")

Load = Callable[..., ModuleType]
Sink = list[CapturedVideo | CapturedPreview | CapturedEncoded]


@pytest.fixture
def real_picamera2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Load]:
    """load(platform, cameras): the real picamera2 as on a Pi 4 ("VC4") or a Pi 5
    ("PISP"). Afterwards every camera is closed and sys.modules is as before, so that
    import_picamera2() finds nothing again for the tests that follow."""
    saved = saved_modules()

    def load_picamera2(platform: str, cameras: Sequence[CameraSpec] = (IMX708,)) -> ModuleType:
        module, _heap = load(platform, cameras, tmp_path, monkeypatch)
        return module

    yield load_picamera2
    unload(saved)
    try:
        assert import_picamera2() is None
    finally:
        unload(saved)  # whatever that import attempt left behind


def settings(**changes: Any) -> PiCameraSettings:
    values: dict[str, Any] = {
        "index": 0,
        "width": 360,
        "height": 240,
        "fps": 30,
        "bitrate": 1_000_000,
        "keyframe_interval": 10.0,
        "lores": (200, 150),
    }
    values.update(changes)
    return PiCameraSettings(**values)


async def until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def of_kind(sink: Sink, kind: type[Any]) -> list[Any]:
    return [item for item in sink if isinstance(item, kind)]


def nal_types(access_unit: bytes) -> list[int]:
    units = access_unit.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [unit[0] & 0x1F for unit in units if unit]


def picture_of(frame: av.VideoFrame) -> np.ndarray[Any, np.dtype[np.uint8]]:
    assert frame.format.name == "yuv420p"
    return np.asarray(frame.to_ndarray(), dtype=np.uint8)


def skip_v4l2_device(picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pi 4's H264Encoder with only its device part skipped: opening /dev/video11
    and its ioctls (V4L2Encoder._start, v4l2_encoder.py:53-163) and closing it
    (_stop). Its _encode returns at once without a device (v4l2_encoder.py:293-294)."""
    v4l2 = importlib.import_module("picamera2.encoders.v4l2_encoder")
    monkeypatch.setattr(v4l2.V4L2Encoder, "_start", lambda self: None)
    monkeypatch.setattr(v4l2.V4L2Encoder, "_stop", lambda self: None)


async def test_the_pi4_h264_encoder_takes_our_arguments_and_sets_the_controls_we_expect(
    real_picamera2: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    picamera2 = real_picamera2("VC4")
    skip_v4l2_device(picamera2, monkeypatch)
    encoders = picamera2.encoders
    v4l2_h264 = encoders.H264Encoder
    assert v4l2_h264.__module__ == "picamera2.encoders.h264_encoder"  # the hardware one
    made: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        encoder = v4l2_h264(*args, **kwargs)
        made.append((encoder, args, kwargs))
        return encoder

    monkeypatch.setattr(encoders, "H264Encoder", recording)
    camera = Picamera2Camera(settings(width=1920, height=1080, keyframe_interval=2.0), picamera2)
    sink: Sink = []
    camera.set_outputs(raw=False, encoded=True)
    camera.start(sink.append)
    try:
        await until(lambda: bool(made) and made[0][0].running, "the encoder to start")
        encoder, args, kwargs = made[0]
        assert args == ()
        assert kwargs == {
            "bitrate": 1_000_000,
            "repeat": True,
            "iperiod": 60,
            "framerate": 30,
            "profile": "constrained baseline",
        }
        videodev2 = importlib.import_module("videodev2")
        # h264_encoder.py:56-95; no level control means the driver's level 4.0.
        assert dict(encoder._controls) == {
            videodev2.V4L2_CID_MPEG_VIDEO_H264_PROFILE: (
                videodev2.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE
            ),
            videodev2.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD: 60,
            videodev2.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER: 1,
        }
        assert encoder.bitrate == 1_000_000
        # start_encoder() gave it the stream libcamera configured (picamera2.py:2483-2486).
        assert (encoder.width, encoder.height, encoder.stride) == (1920, 1080, 1920)
        assert encoder.format == "YUV420"

        # Our Output subclass passed the encoder's check (encoders/encoder.py:200-215),
        # which anything else fails.
        output_class = importlib.import_module("picamera2.outputs").Output
        assert isinstance(encoder.output, output_class)
        with pytest.raises(RuntimeError, match="Must pass Output"):
            v4l2_h264(**kwargs).output = object()

        # force_key_frame (0.3.32 and later) is what our keyframe request calls.
        assert encoder._key_frames_requested == 0
        assert camera.request_keyframe()
        assert encoder._key_frames_requested == 1
    finally:
        await camera.stop()
    assert not made[0][0].running

    # The level our arguments give on either side of level 4.0's macroblock rate
    # (245760/s): 1080p30 stays at 4.0; the same arguments at 60 fps would need 4.2.
    # (peercam refuses more than 1080p30 on this encoder.)
    videodev2 = importlib.import_module("videodev2")
    for fps, level in ((30, None), (60, videodev2.V4L2_MPEG_VIDEO_H264_LEVEL_4_2)):
        encoder = v4l2_h264(**{**kwargs, "framerate": fps})
        encoder.size, encoder.format, encoder.stride = (1920, 1080), "YUV420", 1920
        encoder.start()
        try:
            found = dict(encoder._controls).get(videodev2.V4L2_CID_MPEG_VIDEO_H264_LEVEL)
            assert found == level, f"{fps} fps"
        finally:
            encoder.stop()


async def test_on_a_pi5_raw_and_lores_frames_reach_us_without_the_row_padding(
    real_picamera2: Load,
) -> None:
    picamera2 = real_picamera2("PISP")
    camera = Picamera2Camera(settings(), picamera2)
    assert not camera.hardware_h264
    sink: Sink = []
    camera.set_outputs(raw=True, encoded=False, preview=True)
    camera.start(sink.append)
    try:
        await until(
            lambda: (
                len(of_kind(sink, CapturedVideo)) >= 8 and len(of_kind(sink, CapturedPreview)) >= 8
            ),
            "raw and lores frames",
        )
    finally:
        await camera.stop()
    (started,) = manager().cameras[0].started_with
    # FrameRate in our controls, as picamera2 hands it to libcamera (controls.py:8-18).
    assert started["FrameDurationLimits"] == (33333, 33333)
    # The ISP pads rows to 32 bytes: 360 -> 384, 200 -> 224 (chroma 180 of 192, 100
    # of 112), and the padding holds no picture.
    streams = manager().cameras[0].configured[-1]
    assert ("YUV420", 360, 240, 384) in streams and ("YUV420", 200, 150, 224) in streams
    expected_main, expected_lores = known_picture(360, 240), known_picture(200, 150)
    for item in of_kind(sink, CapturedVideo):
        assert (item.image.width, item.image.height) == (360, 240)
        np.testing.assert_array_equal(picture_of(item.image), expected_main)
    for item in of_kind(sink, CapturedPreview):
        assert (item.image.width, item.image.height) == (200, 150)
        np.testing.assert_array_equal(picture_of(item.image), expected_lores)
    # Sensor timestamps, mapped to our clock, keep the frames' spacing.
    times = [item.captured_at for item in of_kind(sink, CapturedVideo)]
    spacing = float(np.median(np.diff(times)))
    assert spacing == pytest.approx(1 / 30, rel=0.2)


async def test_on_a_pi4_encoded_h264_reaches_us_and_a_keyframe_request_gives_an_idr(
    real_picamera2: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    picamera2 = real_picamera2("VC4")
    monkeypatch.setattr(picamera2.encoders, "H264Encoder", libav_h264_encoder(picamera2))
    camera = Picamera2Camera(settings(width=320, height=240, fps=25), picamera2)
    assert camera.hardware_h264 and camera.native_codec == "h264"
    sink: Sink = []
    camera.set_outputs(raw=False, encoded=True)
    camera.start(sink.append)
    try:
        await until(lambda: len(sink) >= 10, "ten encoded frames")
        assert camera.request_keyframe()
        asked_after = len(sink)
        # The GOP is 250 frames: a keyframe now is the one we asked for.
        await until(
            lambda: any(item.keyframe for item in of_kind(sink, CapturedEncoded)[asked_after:]),
            "the requested keyframe",
        )
        await until(lambda: len(sink) >= asked_after + 5, "frames after it")
    finally:
        await camera.stop()
    (started,) = manager().cameras[0].started_with
    assert started["FrameDurationLimits"] == (40000, 40000)  # 25 fps
    frames = of_kind(sink, CapturedEncoded)
    assert len(frames) == len(sink)  # nothing raw was asked for, nothing raw came
    assert all(item.codec == "h264" for item in frames)
    keyframes = [i for i, item in enumerate(frames) if item.keyframe]
    assert keyframes[0] == 0 and len(keyframes) == 2 and keyframes[1] >= asked_after
    for item in frames:
        types = nal_types(item.data)
        assert item.keyframe == (5 in types)
        if item.keyframe:  # repeat=True: SPS and PPS before every IDR
            assert types[:2] == [7, 8]
    decoder = av.CodecContext.create("h264", "r")
    pictures = []
    for item in frames:
        pictures.extend(decoder.decode(av.Packet(item.data)))
    pictures.extend(decoder.decode(None))
    assert len(pictures) == len(frames)
    assert {(p.width, p.height) for p in pictures} == {(320, 240)}
    # What the encoder saw is our test picture (within what the encode loses).
    luma = picture_of(pictures[0])[:240].astype(int)
    assert np.abs(luma - known_picture(320, 240)[:240].astype(int)).mean() < 4


async def test_frames_have_the_size_libcamera_settled_on_not_the_one_asked_for(
    real_picamera2: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    picamera2 = real_picamera2("VC4")
    monkeypatch.setattr(picamera2.encoders, "H264Encoder", libav_h264_encoder(picamera2))
    # The Pi 4 ISP makes no picture narrower or lower than 64 pixels, so libcamera
    # adjusts 48x40 to 64x64 and picamera2 writes that back into its configuration.
    camera = Picamera2Camera(settings(width=48, height=40, lores=None), picamera2)
    sink: Sink = []
    camera.set_outputs(raw=True, encoded=True)
    camera.start(sink.append)
    try:
        await until(
            lambda: (
                len(of_kind(sink, CapturedVideo)) >= 3 and len(of_kind(sink, CapturedEncoded)) >= 3
            ),
            "raw and encoded frames",
        )
    finally:
        await camera.stop()
    for item in of_kind(sink, CapturedVideo):
        assert (item.image.width, item.image.height) == (64, 64)
        np.testing.assert_array_equal(picture_of(item.image), known_picture(64, 64))
    decoder = av.CodecContext.create("h264", "r")
    first = of_kind(sink, CapturedEncoded)[0]
    (picture,) = decoder.decode(av.Packet(first.data))
    assert (picture.width, picture.height) == (64, 64)


async def test_a_camera_reopens_at_once_after_it_was_stopped(real_picamera2: Load) -> None:
    picamera2 = real_picamera2("PISP")
    # libcamera takes a camera for one holder at a time (camera.cpp:1015-1024).
    first = picamera2.Picamera2(0)
    try:
        with pytest.raises(RuntimeError) as refused:
            picamera2.Picamera2(0)
        cause = refused.value.__cause__
        assert "Failed to acquire camera: Device or resource busy" in str(cause)
    finally:
        first.close()
    # A page refresh: the last viewer leaves, the next one arrives.
    for _ in range(2):
        await frames_from_a_new_camera(picamera2)


async def frames_from_a_new_camera(picamera2: ModuleType) -> None:
    camera = Picamera2Camera(settings(lores=None), picamera2)
    sink: Sink = []
    camera.set_outputs(raw=True, encoded=False)
    camera.start(sink.append)
    try:
        await until(lambda: len(sink) >= 2, "frames from the reopened camera")
    finally:
        await camera.stop()


def test_check_opens_each_listed_camera_and_reports_a_webcam_by_its_format(
    real_picamera2: Load,
) -> None:
    # libcamera's own order; picamera2 lists Pi cameras first, by Id descending, and
    # webcams last (picamera2.py:311-313): imx708, imx219, then the webcam.
    real_picamera2("VC4", [IMX219, WEBCAM, IMX708])
    report = hardware_report(build_config({"camera": {"size": "320x240"}}))
    text = format_report(report)  # what `peercam check` prints
    # The echo canceller is on by default, and cleaned a frame at the mic's rate.
    assert "echo:     on: WebRTC AEC3 (livekit " in text and "at 48000 Hz" in text
    pi = report["cameras"]["picamera2"]
    assert pi["available"] and pi["hardware_h264"]
    listed = pi["cameras"]
    assert [entry["Id"] for entry in listed] == [IMX708.id, IMX219.id, WEBCAM.id]
    # Picamera2(n) takes the position in that list (picamera2.py:345-349), so each
    # entry must have opened the camera it describes.
    assert manager().acquired[-3:] == [IMX708.id, IMX219.id, WEBCAM.id]
    for entry, spec in zip(listed[:2], (IMX708, IMX219), strict=True):
        assert "modes_error" not in entry
        modes = entry["modes"]
        assert [tuple(m["size"]) for m in modes] == [(m.width, m.height) for m in spec.modes]
        assert [m["fps"] for m in modes] == [round(m.max_fps, 2) for m in spec.modes]
    # A webcam's modes carry only a format (picamera2.py:601-604).
    webcam = listed[2]
    assert "modes_error" not in webcam
    assert [m["format"] for m in webcam["modes"]] == ["MJPEG"]
    assert all(not m.get("size") and m.get("fps") is None for m in webcam["modes"])
    # One line per listed camera, in list order.
    lines = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert len(lines) == 3
    by_model = dict(zip(("imx708", "imx219", "UVC"), lines, strict=True))
    assert all(model in line for model, line in by_model.items())
    assert "1536x864@120" in by_model["imx708"] and "4608x2592@14" in by_model["imx708"]
    assert "640x480@103" in by_model["imx219"]
    assert "MJPEG" in by_model["UVC"]
