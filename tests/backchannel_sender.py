#!/usr/bin/python3
"""Talk to a camera the way an ONVIF NVR does: GStreamer's rtspsrc with
backchannel=onvif sends a sine tone on the RTSP stream's back-channel.

    /usr/bin/python3 tests/backchannel_sender.py rtsp://admin:PASSWORD@127.0.0.1:8554/live \
        [--duration 3] [--frequency 440] [--timeout 20] [--transport tcp|udp]

Run it with Debian's /usr/bin/python3: GStreamer's Python bindings (gi) exist only
there, not in the project's venv. It prints one JSON line, e.g.
    {"pushed_buffers": 150, "pushed_bytes": 25800, "stream_id": 1, "codec": "PCMU", "error": null}
and exits 0 only when it pushed audio, with no error. It always ends by itself:
everything is bounded by --timeout, and a watchdog kills the process if even
shutting GStreamer down hangs.

How rtspsrc (gst-plugins-good 1.22, gst/rtsp/gstrtspsrc.c) does the back-channel, and
so what this script relies on:
- it sends `Require: www.onvif.org/ver20/backchannel` on DESCRIBE, on the back-channel's
  SETUP, and on the aggregate PLAY and PAUSE (not on the other SETUPs nor on an aggregate
  TEARDOWN); a server that answers DESCRIBE with 551 makes it fail "Server can not
  provide an SDP." (it does not retry without);
- the back-channel is any SDP media with `a=sendonly`; `select-stream` announces it
  with its caps (a field "a-sendonly") and its stream id (the media's index);
- the app pushes complete RTP packets, wrapped in a GstSample, with the action signal
  `push-backchannel-sample(guint id, GstSample *sample)`; rtspsrc writes the buffer
  as-is on the stream's interleaved RTP channel (TCP) or to the server's RTP port
  (UDP). It drops them silently (still returning OK) until PLAY has been answered.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")  # on-sdp hands us a GstSdp.SDPMessage
from gi.repository import GLib, Gst, GstSdp  # noqa: E402

# What we can produce for each back-channel codec (RFC 3551 static payload types).
ENCODERS = {"PCMU": "mulawenc ! rtppcmupay", "PCMA": "alawenc ! rtppcmapay"}
PACKET_MS = 20  # audio per RTP packet, as G.711 phones and cameras use
# rtspsrc's own wording when DESCRIBE fails without an SDP (a 551 answer included).
NO_SDP = "Server can not provide an SDP"

_gst = ctypes.CDLL("libgstreamer-1.0.so.0")
_gst.gst_mini_object_ref.argtypes = [ctypes.c_void_p]
_gst.gst_mini_object_ref.restype = ctypes.c_void_p
_gst.gst_mini_object_unref.argtypes = [ctypes.c_void_p]


def push_sample(rtspsrc: Gst.Element, stream_id: int, sample: Gst.Sample) -> Gst.FlowReturn:
    """Emit push-backchannel-sample without losing the sample's last reference.

    In 1.22.0 (Debian 12) that signal is wired to the deprecated handler that unrefs
    the sample it is lent (fixed in 1.22.1, commit 269915a51e); from Python that
    frees the sample under its wrapper. So take one reference for the handler, and
    give it back if this rtspsrc did not take it. PyGObject's hash() of a boxed is
    its C pointer; GstMiniObject starts with a GType, then the gint refcount.
    """
    pointer = hash(sample)
    refcount = ctypes.c_int.from_address(pointer + ctypes.sizeof(ctypes.c_size_t))
    before = refcount.value
    _gst.gst_mini_object_ref(pointer)
    flow: Gst.FlowReturn = rtspsrc.emit("push-backchannel-sample", stream_id, sample)
    if refcount.value > before:
        _gst.gst_mini_object_unref(pointer)
    return flow


@dataclass
class Result:
    pushed_buffers: int = 0
    pushed_bytes: int = 0
    stream_id: int | None = None  # rtspsrc's id of the back-channel: its SDP media index
    codec: str | None = None
    error: str | None = None


class BackchannelSender:
    def __init__(self, url: str, duration: float, frequency: float, transport: str) -> None:
        self.duration = duration
        self.frequency = frequency
        self.loop = GLib.MainLoop()
        self.lock = threading.Lock()  # counters are touched by GStreamer's threads
        self.result = Result()
        self.sender: Gst.Pipeline | None = None
        self.sendonly_in_sdp = False

        self.pipeline = Gst.Pipeline.new("receiver")
        self.rtspsrc = Gst.ElementFactory.make("rtspsrc", "src")
        # Credentials as properties: rtspsrc would not percent-decode them in the URL.
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        self.rtspsrc.set_property("location", urlunsplit(parts._replace(netloc=netloc)))
        if parts.username:
            self.rtspsrc.set_property("user-id", unquote(parts.username))
            self.rtspsrc.set_property("user-pw", unquote(parts.password or ""))
        Gst.util_set_object_arg(self.rtspsrc, "backchannel", "onvif")
        Gst.util_set_object_arg(self.rtspsrc, "protocols", transport)
        self.rtspsrc.set_property("latency", 0)
        self.rtspsrc.connect("on-sdp", self._on_sdp)
        self.rtspsrc.connect("select-stream", self._on_select_stream)
        self.rtspsrc.connect("pad-added", self._on_pad_added)
        self.pipeline.add(self.rtspsrc)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    # -- the incoming stream: only its SDP and its PLAY matter ---------------------

    def _on_sdp(self, _src: Gst.Element, sdp: GstSdp.SDPMessage) -> None:
        # The SDP is where a server that ignored the Require header shows it: no
        # a=sendonly media. (rtspsrc would play on without a back-channel.)
        for index in range(sdp.medias_len()):
            if sdp.get_media(index).get_attribute_val("sendonly") is not None:
                self.sendonly_in_sdp = True
        if not self.sendonly_in_sdp:
            self._fail_soon("no back-channel: the server's SDP has no a=sendonly media")

    def _on_select_stream(self, _src: Gst.Element, stream_id: int, caps: Gst.Caps) -> bool:
        structure = caps.get_structure(0)
        if structure.has_field("a-sendonly") and self.result.stream_id is None:
            codec = (structure.get_string("encoding-name") or "").upper()
            self.result.stream_id, self.result.codec = stream_id, codec
            if codec not in ENCODERS:
                self._fail_soon(f"back-channel codec {codec!r}: this script sends PCMU or PCMA")
            else:
                self.sender = self._make_sender(codec, _rtp_caps(structure))
        return True  # set up every stream; the others go to fakesinks

    def _on_pad_added(self, _src: Gst.Element, pad: Gst.Pad) -> None:
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def _on_message(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            text = error.message
            if NO_SDP in text or NO_SDP in (debug or ""):
                text = ("the server refused DESCRIBE with Require: "
                        "www.onvif.org/ver20/backchannel (e.g. 551 Option not supported): "
                        f"no back-channel ({NO_SDP}.)")  # fmt: skip
            elif debug:
                text += f" ({debug.splitlines()[-1][:200]})"
            self._finish(text)
        elif message.type == Gst.MessageType.WARNING:
            warning, _ = message.parse_warning()
            if "closed the connection" in warning.message:
                self._finish(f"connection closed: {warning.message}")
        elif message.type == Gst.MessageType.EOS:
            self._finish("connection closed: the stream ended")
        elif message.type == Gst.MessageType.PROGRESS and message.src is self.rtspsrc:
            kind, _code, text = message.parse_progress()
            # Pushing before PLAY's answer would be dropped by rtspsrc without a word.
            if kind == Gst.ProgressType.COMPLETE and text == "Sent PLAY request":
                self._start_sending()

    # -- the back-channel ----------------------------------------------------------

    def _make_sender(self, codec: str, caps: Gst.Caps) -> Gst.Pipeline:
        samples = 8000 * PACKET_MS // 1000
        sender = Gst.parse_launch(
            f"audiotestsrc is-live=true wave=sine freq={self.frequency} volume=0.5 "
            f"samplesperbuffer={samples} num-buffers={int(self.duration * 1000 / PACKET_MS)} "
            f"! audio/x-raw,rate=8000,channels=1 ! {ENCODERS[codec]} "
            f"max-ptime={PACKET_MS * 1_000_000} ! appsink name=out emit-signals=true sync=false"
        )
        appsink = sender.get_by_name("out")
        appsink.set_property("caps", caps)  # the payload type the SDP offered
        appsink.connect("new-sample", self._on_new_sample)
        sender.get_bus().add_signal_watch()
        sender.get_bus().connect("message", self._on_sender_message)
        return sender

    def _start_sending(self) -> None:
        if self.sender is None:  # the reason, if we know it, came first: it is kept
            self._finish("no back-channel: rtspsrc set up no a=sendonly stream")
            return
        self.sender.set_state(Gst.State.PLAYING)

    def _on_new_sample(self, appsink: Gst.Element) -> Gst.FlowReturn:
        sample = appsink.emit("pull-sample")
        assert self.result.stream_id is not None  # the sender exists only then
        flow = push_sample(self.rtspsrc, self.result.stream_id, sample)
        if flow == Gst.FlowReturn.OK:
            with self.lock:
                self.result.pushed_buffers += 1
                self.result.pushed_bytes += sample.get_buffer().get_size()
        return flow

    def _on_sender_message(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.EOS:
            self._finish(None)  # the tone has been sent for the whole duration
        elif message.type == Gst.MessageType.ERROR:
            self._finish(f"tone pipeline: {message.parse_error()[0].message}")

    # -- ending ----------------------------------------------------------------------

    def _fail_soon(self, error: str) -> None:
        # Called from rtspsrc's thread: end from the main loop instead.
        GLib.idle_add(self._finish, error)

    def _finish(self, error: str | None) -> bool:
        if self.result.error is None and error is not None:
            self.result.error = error
        self.loop.quit()
        return False

    def run(self, timeout: float) -> Result:
        GLib.timeout_add(int(timeout * 1000), self._finish, f"timed out after {timeout:g} s")
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._finish("rtspsrc would not start")
        else:
            self.loop.run()
        for pipeline in (self.sender, self.pipeline):
            if pipeline is not None:
                pipeline.set_state(Gst.State.NULL)  # sends TEARDOWN
        return self.result


def _rtp_caps(structure: Gst.Structure) -> Gst.Caps:
    """The stream's caps as an RTP payloader's: without rtspsrc's SDP attributes
    ("a-…" fields), as in GStreamer's own tests/examples/rtsp/test-onvif.c."""
    wanted = Gst.Structure.new_empty("application/x-rtp")
    for name in ("media", "payload", "clock-rate", "encoding-name"):
        if structure.has_field(name):
            wanted.set_value(name, structure.get_value(name))
    caps = Gst.Caps.new_empty()
    caps.append_structure(wanted)
    return caps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="rtsp://user:password@host:port/path")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of tone")
    parser.add_argument("--frequency", type=float, default=440.0, help="tone, Hz")
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="give up after N seconds (default: duration+15)"
    )
    parser.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    args = parser.parse_args()
    timeout = args.timeout or args.duration + 15

    # Last resort: if shutting GStreamer down hangs, still answer and exit.
    def watchdog() -> None:
        print(json.dumps(asdict(Result(error="hung; killed by the watchdog"))), flush=True)
        os._exit(3)

    timer = threading.Timer(timeout + 10, watchdog)
    timer.daemon = True
    timer.start()

    Gst.init(None)
    result = BackchannelSender(args.url, args.duration, args.frequency, args.transport).run(timeout)
    print(json.dumps(asdict(result)), flush=True)
    ok = result.error is None and result.pushed_buffers > 0
    if not ok:
        print(f"backchannel_sender: {result.error or 'pushed nothing'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
