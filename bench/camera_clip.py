"""Encode cost and passthrough CPU on camera-like content instead of the test pattern.

The clip is a real photograph (Debian's plasma-workspace-wallpapers, 2560x1600)
seen through a slowly drifting window, the way a handheld or wind-shaken camera sees
a scene, with sensor noise on top. Reports:
1. CPU per frame of libx264 and libvpx with peercam's own settings, at 720p and 1080p;
2. CPU per extra viewer when the daemon passes a recorded H.264 clip through
   (camera.source = "file": the USB H.264 camera's code path).
Prints figures and writes bench/results/camera_clip.md; asserts nothing.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from bench.cpu_per_viewer import measure
from bench.processes import start_peercam, stop
from bench.report import publish
from bench.systems import running_peercam
from peercam.encode.video import PyAVVideoEncoder, VideoSettings
from peercam.media import CapturedVideo

PHOTO_GLOB = "/usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg"
SIZES = {"720p": (1280, 720, 2_500_000), "1080p": (1920, 1080, 5_000_000)}


def load_photo(path: str, width: int) -> npt.NDArray[np.uint8]:
    """The photograph as one I420 buffer, scaled so a frame is about 90 % of it."""
    with av.open(path) as container:
        picture = next(container.decode(video=0))
    height = round(picture.height * width / picture.width) // 2 * 2
    scaled = picture.reformat(width=width, height=height, format="yuv420p")
    return np.asarray(scaled.to_ndarray(), dtype=np.uint8)


def camera_frames(
    photo: npt.NDArray[np.uint8], width: int, height: int, count: int
) -> list[av.VideoFrame]:
    full_h = photo.shape[0] * 2 // 3
    full_w = photo.shape[1]
    luma = photo[:full_h]
    chroma = photo[full_h:].reshape(2, full_h // 2, full_w // 2)
    rng = np.random.default_rng(7)
    noise = [
        rng.integers(-6, 7, (height, width), dtype=np.int16).astype(np.uint8) for _ in range(5)
    ]
    frames = []
    for index in range(count):
        # A slow drift with a little shake: every frame differs from the last, as in a
        # real camera, without moving so fast that the encoder sees a new scene.
        x = (full_w - width) / 2 * (1 + math.sin(index / 90)) + 2 * math.sin(index * 0.7)
        y = (full_h - height) / 2 * (1 + math.sin(index / 130)) + 2 * math.cos(index * 0.5)
        left, top = int(x) & ~1, int(y) & ~1
        out = np.empty((height * 3 // 2, width), dtype=np.uint8)
        out[:height] = luma[top : top + height, left : left + width]
        out[:height] += noise[index % len(noise)]  # wraps: stored offsets subtract too
        planes = out[height:].reshape(2, height // 2, width // 2)
        planes[:] = chroma[:, top // 2 : (top + height) // 2, left // 2 : (left + width) // 2]
        frames.append(av.VideoFrame.from_ndarray(out, format="yuv420p"))
    return frames


def encode_cost(
    implementation: str, codec: str, frames: list[av.VideoFrame], bitrate: int
) -> tuple[float, float, bytes]:
    """(CPU ms per frame, kbit/s produced, the encoded stream)."""
    settings = VideoSettings(frames[0].width, frames[0].height, 30, bitrate, 2.0)
    encoder = PyAVVideoEncoder(codec, settings, implementation)
    stream = bytearray()
    started = time.process_time()
    for frame in frames:
        for chunk in encoder.encode(CapturedVideo(frame, 0.0), False):
            stream += chunk.data
    cost = (time.process_time() - started) / len(frames) * 1000
    kbps = len(stream) * 8 / (len(frames) / 30) / 1000
    return cost, kbps, bytes(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="clip length per size")
    parser.add_argument("--viewers", default="1,2,5,10")
    parser.add_argument("--window", type=float, default=8.0)
    args = parser.parse_args()
    photos = sorted(glob.glob(PHOTO_GLOB))
    if not photos:
        sys.exit("no photograph found: `make bench` installs plasma-workspace-wallpapers")
    count = round(args.seconds * 30)
    lines = [
        "# Camera-like clip: a drifting window on a photograph, with sensor noise",
        "",
        "| size | encoder | CPU ms per frame | % of a core at 30 fps | kbit/s |",
        "|---|---|---|---|---|",
    ]
    clip_720: bytes = b""
    for name, (width, height, bitrate) in SIZES.items():
        photo = load_photo(photos[0], width=round(width / 0.9) // 2 * 2)
        frames = camera_frames(photo, width, height, count)
        for implementation, codec in (("libx264", "h264"), ("libvpx", "vp8")):
            cost, kbps, stream = encode_cost(implementation, codec, frames, bitrate)
            print(f"  {name} {implementation}: {cost:.1f} ms CPU per frame, {kbps:.0f} kbit/s")
            lines.append(
                f"| {name} | {implementation} | {cost:.1f} | {cost * 30 / 10:.0f} | {kbps:.0f} |"
            )
            if name == "720p" and codec == "h264":
                clip_720 = stream

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "camera-720p.h264"
        clip.write_bytes(clip_720)
        config = Path(tmp) / "peercam.toml"
        config.write_text(
            f'[camera]\nsource = "file"\nfile = "{clip}"\nsize = "1280x720"\n'
            '[video]\ncodecs = ["h264"]\n[audio]\nenabled = false\n[viewers]\nmax_viewers = 200\n'
            "max_per_client = 200\nsessions_per_minute_per_client = 1000\n"
        )
        daemon, access = start_peercam(config)
        try:
            counts = [int(v) for v in args.viewers.split(",")]
            running = running_peercam(daemon, access, "H264", name="passthrough", audio=False)
            run = measure(running, counts, args.window)
        finally:
            stop(daemon)
    lines += [
        "",
        "H.264 passthrough of the recorded 720p clip (camera.source = file, the USB",
        "H.264 camera's path: no encode in the daemon):",
        "",
        "| viewers | CPU % of a core | RSS MB | slowest viewer received kbit/s |",
        "|---|---|---|---|",
        *(
            f"| {s.viewers} | {s.cpu_percent:.1f} | {s.rss_mb:.0f} | {s.slowest_viewer_kbps:.0f} |"
            for s in run.samples
        ),
        "",
        f"- CPU per extra viewer on the passthrough path: {run.per_extra_viewer():.2f} % of a core",
    ]
    publish("camera_clip.md", lines)


if __name__ == "__main__":
    main()
