"""gst-rtsp-server as the RTSP server to compare with, for the side-by-side benchmark.

Runs under Debian's own python3 (PyGObject, GStreamer 1.22 and gir1.2-gst-rtsp-server
come from Debian, not from the venv). Serves rtsp://127.0.0.1:PORT/live from the RTP
the peercam daemon forwards (H.264, and Opus with --audio-port): one shared media,
depayloaded and payloaded once, each client's session off it — the same fan-out
peercam's own RTSP server does from its shared packets.

    python3 bench/gst_rtsp_server.py --port P --rtp-port R [--audio-port A]
"""

from __future__ import annotations

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO_CAPS = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"


def launch_line(rtp_port: int, audio_port: int | None) -> str:
    video = (
        f'udpsrc port={rtp_port} caps="{VIDEO_CAPS}" buffer-size=2097152 ! rtph264depay '
        "! rtph264pay name=pay0 pt=96 config-interval=-1"
    )
    audio = (
        f' udpsrc port={audio_port} caps="{OPUS_CAPS}" ! rtpopusdepay ! rtpopuspay name=pay1 pt=97'
        if audio_port
        else ""
    )
    return f"( {video}{audio} )"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, required=True)
    parser.add_argument("--audio-port", type=int)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.rtp_port, args.audio_port))
    # One pipeline for every client, as peercam's one encode; kept between clients so
    # its sockets stay bound to the forwarded stream.
    factory.set_shared(True)
    factory.set_eos_shutdown(False)
    factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    print(f"serving on rtsp://127.0.0.1:{args.port}/live", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
