"""What a change of each setting interrupts, said on the page before saving.

The motion detector's thresholds and zones are read on every picture analysed, so
they apply at once and interrupt nothing. The camera's own settings (which camera,
size, rate, orientation) and its encoders' restart only the camera and the video
encoders: every stream's hub stays, so live views, RTSP clients and the recorder
stay connected and get the new pictures from the next keyframe on (a clip being
recorded is closed first). Other settings are read once, where the daemon builds
its parts; changing one restarts the daemon in place (its process, port and logins
stay): live views reconnect by themselves within seconds, an RTSP client or a call
in progress is dropped and a clip being recorded is closed."""

from __future__ import annotations

from enum import StrEnum


class Impact(StrEnum):
    # In the order of how much each interrupts.
    NOTHING = "nothing"
    CAMERA = "camera"
    RESTART = "restart"


# Settings the running daemon takes without restarting anything.
LIVE = frozenset({"motion.threshold", "motion.min_area", "motion.cooldown_seconds", "motion.masks"})

# Settings that only the camera and its video encoders are built from (pipeline.py's
# build_video). Turning the small stream on or off (camera.lores_size) adds or
# removes a stream: the daemon then restarts instead.
CAMERA = frozenset(
    {f"camera.{key}" for key in (
        "source", "size", "fps", "index", "device", "input_format", "file", "rotation",
        "hflip", "vflip", "lores_size",
    )}
    | {f"video.{key}" for key in (
        "bitrate_kbps", "keyframe_interval", "h264_encoder", "sub_fps", "sub_bitrate_kbps",
    )}
)  # fmt: skip

SAYS = {
    Impact.NOTHING: "applies at once; nothing is interrupted",
    Impact.CAMERA: (
        "restarts the camera and its encoders: live views, RTSP clients and recording "
        "pause for a moment and go on at the new settings; a clip being recorded is closed"
    ),
    Impact.RESTART: (
        "restarts the camera for a few seconds: live views come back by themselves; "
        "RTSP clients, calls and talk in progress are dropped and a clip being "
        "recorded is closed"
    ),
}


_ORDER = list(Impact)


def impact_of(dotted: str) -> Impact:
    if dotted in LIVE:
        return Impact.NOTHING
    return Impact.CAMERA if dotted in CAMERA else Impact.RESTART


def impact_of_all(keys: list[str]) -> Impact:
    """The most any one of `keys` interrupts."""
    return max((impact_of(k) for k in keys), key=_ORDER.index, default=Impact.NOTHING)
