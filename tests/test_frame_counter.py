"""The example output (frame_counter/), in the real daemon: written only against the
output contract, it counts a codec's shared frames in /metrics with nobody watching,
and a codec the pipeline does not make is named in the log instead of failing."""

from __future__ import annotations

import time

from tests.conftest import SMALL, StartDaemon

COUNTED = SMALL + '[video]\ncodecs = ["h264"]\n[frame_counter]\ncodecs = ["h264", "vp8"]\n'


def test_the_frame_counter_counts_the_shared_frames_with_no_viewer(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(COUNTED)
    labels = {"codec": "h264"}
    deadline = time.monotonic() + 30
    while daemon.metric("peercam_frame_counter_frames_total", keyframe="false", **labels) < 30:
        assert time.monotonic() < deadline, daemon.log()[-2000:]
        time.sleep(0.2)
    # It takes the stream as any output does: starting at a keyframe, from the one
    # shared encoder, with no viewer session.
    assert daemon.metric("peercam_frame_counter_frames_total", keyframe="true", **labels) >= 1
    assert daemon.metric("peercam_viewers") == 0
    assert daemon.metric("peercam_encoder_running", **labels) == 1
    assert "frame_counter: no vp8 stream" in daemon.log()
    assert "frame counter of h264 started" in daemon.log()
