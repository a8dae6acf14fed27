"""GStreamer's webrtcbin as a WHEP server, for the side-by-side benchmark.

Runs under Debian's own python3 (PyGObject and GStreamer 1.22 come from Debian, not
from the venv). Receives the RTP H.264 stream the peercam daemon forwards (the same
content Janus gets), depayloads it once, and gives each viewer its own branch off a
tee: queue → rtph264pay (the payload type that viewer's offer chose) → webrtcbin.
With `--audio-port`, the forwarded Opus likewise (queue → rtpopuspay) for viewers
whose offer has audio. Signaling is WHEP without trickle: POST an offer, get an answer
that already carries the server's candidates; DELETE the Location to hang up.

    python3 bench/gstreamer_server.py --http-port P --rtp-port R [--audio-port A]
"""

from __future__ import annotations

import argparse
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

RTP_CAPS = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"


def h264_payload_type(offer: str) -> int:
    """The offer's payload type for constrained-baseline H.264 in packetization mode 1,
    the profile the forwarded stream has; else any H.264."""
    types = re.findall(r"a=rtpmap:(\d+) H264/90000", offer)
    if not types:
        raise ValueError("the offer has no H.264")
    for pt in types:
        fmtp = re.search(rf"a=fmtp:{pt} (.*)", offer)
        if fmtp and "packetization-mode=1" in fmtp.group(1) and "42e01f" in fmtp.group(1):
            return int(pt)
    return int(types[0])


def opus_payload_type(offer: str) -> int | None:
    """The offer's payload type for Opus, if its audio section has one."""
    found = re.search(r"a=rtpmap:(\d+) opus/48000", offer, re.IGNORECASE)
    return int(found.group(1)) if found else None


class Viewer:
    """One viewer's branch: its elements live in the shared pipeline."""

    def __init__(self, server: Server, offer_text: str) -> None:
        self.server = server
        self.id = uuid.uuid4().hex
        payload_type = h264_payload_type(offer_text)
        self.queue = Gst.ElementFactory.make("queue")
        self.queue.set_property("leaky", 2)  # a slow viewer drops, never stalls the tee
        self.queue.set_property("max-size-buffers", 60)
        self.pay = Gst.ElementFactory.make("rtph264pay")
        self.pay.set_property("pt", payload_type)
        self.pay.set_property("config-interval", -1)
        self.pay.set_property("aggregate-mode", "zero-latency")
        self.webrtc = Gst.ElementFactory.make("webrtcbin")
        self.webrtc.set_property("bundle-policy", "max-bundle")
        self.gathered = threading.Event()
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        pipeline = server.pipeline
        for element in (self.queue, self.pay, self.webrtc):
            pipeline.add(element)
        self.queue.link(self.pay)
        caps = Gst.Caps.from_string(
            f"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,"
            f"payload={payload_type},packetization-mode=(string)1,"
            f"profile-level-id=(string)42e01f"
        )
        self.pay.link_filtered(self.webrtc, caps)
        for element in (self.webrtc, self.pay, self.queue):
            element.sync_state_with_parent()
        self.tee_pad = server.tee.request_pad_simple("src_%u")
        self.tee_pad.link(self.queue.get_static_pad("sink"))
        self.audio: tuple[Any, Any, Any] | None = None
        opus = opus_payload_type(offer_text) if server.audio_tee is not None else None
        if opus is not None:
            self._add_audio(opus)

    def _add_audio(self, payload_type: int) -> None:
        queue = Gst.ElementFactory.make("queue")
        queue.set_property("leaky", 2)
        queue.set_property("max-size-buffers", 50)
        pay = Gst.ElementFactory.make("rtpopuspay")
        pay.set_property("pt", payload_type)
        pipeline = self.server.pipeline
        for element in (queue, pay):
            pipeline.add(element)
        queue.link(pay)
        caps = Gst.Caps.from_string(
            f"application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,"
            f"payload={payload_type}"
        )
        pay.link_filtered(self.webrtc, caps)
        for element in (pay, queue):
            element.sync_state_with_parent()
        audio_tee = self.server.audio_tee
        assert audio_tee is not None
        tee_pad = audio_tee.request_pad_simple("src_%u")
        tee_pad.link(queue.get_static_pad("sink"))
        self.audio = (queue, pay, tee_pad)

    def _on_gathering(self, webrtc: Any, _spec: Any) -> None:
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.gathered.set()

    def answer(self, offer_text: str) -> str:
        _, message = GstSdp.SDPMessage.new_from_text(offer_text)
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, message)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", offer, promise)
        promise.wait()
        promise = Gst.Promise.new()
        self.webrtc.emit("create-answer", None, promise)
        promise.wait()
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            error = reply.get_value("error") if reply is not None else None
            raise ValueError(f"webrtcbin could not answer: {error}")
        promise = Gst.Promise.new()
        self.webrtc.emit("set-local-description", answer, promise)
        promise.wait()
        if not self.gathered.wait(10):
            raise TimeoutError("ICE gathering did not finish")
        return str(self.webrtc.get_property("local-description").sdp.as_text())

    def close(self) -> None:
        self.server.tee.release_request_pad(self.tee_pad)
        elements = [self.queue, self.pay, self.webrtc]
        if self.audio is not None:
            queue, pay, tee_pad = self.audio
            assert self.server.audio_tee is not None
            self.server.audio_tee.release_request_pad(tee_pad)
            elements += [queue, pay]
        for element in elements:
            element.set_state(Gst.State.NULL)
            self.server.pipeline.remove(element)


class Server:
    def __init__(self, rtp_port: int, audio_port: int | None = None) -> None:
        # The H.264 stream is depayloaded and parsed once; each viewer payloads it anew
        # (its own payload type), the way webrtcbin applications are written.
        description = (
            f'udpsrc port={rtp_port} caps="{RTP_CAPS}" buffer-size=1048576 '
            "! rtpjitterbuffer latency=0 ! rtph264depay ! h264parse config-interval=-1 "
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! tee name=fanout allow-not-linked=true"
        )
        if audio_port is not None:
            description += (
                f' udpsrc port={audio_port} caps="{OPUS_CAPS}" '
                "! rtpjitterbuffer latency=0 ! rtpopusdepay "
                "! tee name=audiofanout allow-not-linked=true"
            )
        self.pipeline = Gst.parse_launch(description)
        self.tee = self.pipeline.get_by_name("fanout")
        self.audio_tee = self.pipeline.get_by_name("audiofanout") if audio_port else None
        self.viewers: dict[str, Viewer] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def add(self, offer: str) -> Viewer:
        with self.lock:
            viewer = Viewer(self, offer)
            self.viewers[viewer.id] = viewer
        return viewer

    def remove(self, viewer_id: str) -> bool:
        with self.lock:
            viewer = self.viewers.pop(viewer_id, None)
            if viewer is None:
                return False
            viewer.close()
            return True


def handler_for(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            offer = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            try:
                viewer = server.add(offer)
                answer = viewer.answer(offer)
            except (ValueError, TimeoutError) as error:
                self._reply(400, str(error).encode(), {"Content-Type": "text/plain"})
                return
            self._reply(
                201,
                answer.encode(),
                {"Content-Type": "application/sdp", "Location": f"/whep/{viewer.id}"},
            )

        def do_DELETE(self) -> None:
            found = server.remove(self.path.rsplit("/", 1)[-1])
            self._reply(200 if found else 404, b"", {})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--http-host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--rtp-port", type=int, required=True)
    parser.add_argument("--audio-port", type=int, help="forwarded Opus RTP, for audio too")
    args = parser.parse_args()
    Gst.init(None)
    server = Server(args.rtp_port, args.audio_port)
    server.start()
    http = ThreadingHTTPServer((args.http_host, args.http_port), handler_for(server))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"gstreamer: serving on http://{args.http_host}:{args.http_port}/", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
