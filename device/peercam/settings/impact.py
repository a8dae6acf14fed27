"""What a change of each setting interrupts, said on the page before saving.

Most settings are read once, where the daemon builds its parts; changing one
restarts the daemon in place (its process, port and logins stay): the camera and
the encoders start again, live views reconnect by themselves within seconds, an
RTSP client or a call in progress is dropped and a clip being recorded is closed.
The motion detector's thresholds and zones are read on every picture analysed,
so they apply at once and interrupt nothing."""

from __future__ import annotations

from enum import StrEnum


class Impact(StrEnum):
    NOTHING = "nothing"
    RESTART = "restart"


# Settings the running daemon takes without restarting anything.
LIVE = frozenset({"motion.threshold", "motion.min_area", "motion.cooldown_seconds", "motion.masks"})

SAYS = {
    Impact.NOTHING: "applies at once; nothing is interrupted",
    Impact.RESTART: (
        "restarts the camera for a few seconds: live views come back by themselves; "
        "RTSP clients, calls and talk in progress are dropped and a clip being "
        "recorded is closed"
    ),
}


def impact_of(dotted: str) -> Impact:
    return Impact.NOTHING if dotted in LIVE else Impact.RESTART


def impact_of_all(keys: list[str]) -> Impact:
    """The most any one of `keys` interrupts."""
    return Impact.RESTART if any(impact_of(k) is Impact.RESTART for k in keys) else Impact.NOTHING
