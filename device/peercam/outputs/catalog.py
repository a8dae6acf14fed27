"""Every output the daemon can run, in the order they start (they stop in reverse).
Adding one is a line here; its module builds it from the config."""

from __future__ import annotations

from peercam.frame_counter import frame_counter
from peercam.homeassistant import mqtt_bridge
from peercam.motion import watch
from peercam.onvif import server as onvif
from peercam.outputs.output import Output, OutputContext, OutputFactory
from peercam.recording import recorder
from peercam.remote import service as remote
from peercam.republish import rtp_forward, whip_publisher
from peercam.ringback import ringback
from peercam.sip import phone_line
from peercam.webpush import service as webpush

FACTORIES: list[OutputFactory] = [
    whip_publisher.build,
    rtp_forward.build,
    onvif.build,  # the RTSP server, and ONVIF beside it
    # Those that hear events start before those that tell them: the recorder says
    # whether it is switched on as it starts, motion is seen once the watch runs.
    mqtt_bridge.build,
    webpush.build,
    ringback.build,
    phone_line.build,  # after ring-back: both hear the ring, neither tells the other
    recorder.build,
    watch.build,
    frame_counter.build,
    remote.build,
]


def build_outputs(context: OutputContext) -> list[Output]:
    return [output for factory in FACTORIES for output in factory(context)]
