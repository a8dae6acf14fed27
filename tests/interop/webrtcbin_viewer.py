"""GStreamer's webrtcbin as a WHEP viewer: a WebRTC stack that is neither libwebrtc nor
aiortc, with an RSA DTLS certificate (GStreamer 1.22's default, as in the NVR and
home-automation clients built on it).

Runs under Debian's own python3 (PyGObject and GStreamer come from Debian, not from
the venv); tests/interop/webrtcbin.py drives it. The test does the HTTP side (its
credentials, its trust in the daemon's certificate), so this process only speaks
JSON lines:

    out {"offer": sdp}          once ICE gathering has finished (WHEP without trickle)
    in  {"answer": sdp}
    in  {"report": true}        out {"report": {...}}: what was received and decoded
    in  {"stop": true}          ends the process

    python3 tests/interop/webrtcbin_viewer.py OFFER_KIND
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

_H264 = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt}"
_H264_FMTP = ",packetization-mode=(string){mode},profile-level-id=(string){profile}"
_FEEDBACK = ",rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true"
_VP8 = "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload={pt}"
_OPUS = (
    "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111,"
    "encoding-params=(string)2"
)


def h264(pt: int, profile: str, mode: int) -> str:
    return _H264.format(pt=pt) + _H264_FMTP.format(mode=mode, profile=profile) + _FEEDBACK


# What each kind of offer lists for video, in order of preference.
OFFERS = {
    # As Safari offers: H.264 High then constrained baseline, packetization mode 1
    # then 0, then VP8.
    "safari": [
        h264(96, "640c1f", 1),
        h264(98, "42e01f", 1),
        h264(100, "640c1f", 0),
        h264(102, "42e01f", 0),
        _VP8.format(pt=104) + _FEEDBACK,
    ],
    "vp8": [_VP8.format(pt=96) + _FEEDBACK],
}


def emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def first_packet_is_keyframe(encoding: str, packet: bytes) -> bool:
    """Whether an RTP packet starts a keyframe: H.264 with an SPS or IDR NAL unit first
    (alone, in a STAP-A, or as the start of an FU-A); VP8 with the start of a partition
    whose frame header says key frame (RFC 7741)."""
    csrcs = packet[0] & 0x0F
    offset = 12 + 4 * csrcs
    if packet[0] & 0x10:  # header extension
        length = int.from_bytes(packet[offset + 2 : offset + 4], "big")
        offset += 4 + 4 * length
    payload = packet[offset:]
    if encoding == "H264":
        nal = payload[0] & 0x1F
        if nal == 24:  # STAP-A: skip its header and the first unit's size
            nal = payload[3] & 0x1F
        elif nal == 28:  # FU-A: the start fragment names the unit
            nal = payload[1] & 0x1F if payload[1] & 0x80 else 0
        return nal in (5, 7)
    if encoding == "VP8":
        descriptor = payload[0]
        start = bool(descriptor & 0x10) and descriptor & 0x07 == 0
        index = 1
        if descriptor & 0x80:
            extension = payload[1]
            index = 2
            if extension & 0x80:
                index += 2 if payload[index] & 0x80 else 1
            if extension & 0x40:
                index += 1
            if extension & 0x30:
                index += 1
        return start and payload[index] & 0x01 == 0
    return False


class Viewer:
    def __init__(self, offer_kind: str) -> None:
        self.pipeline = Gst.Pipeline.new("viewer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        self.lock = threading.Lock()
        self.report: dict[str, Any] = {
            "video_encoding": None,
            "video_payload_type": None,
            "first_video_packet_keyframe": None,
            "video_frames": 0,
            "video_size": None,
            "audio_encoding": None,
            "audio_samples": 0,
        }
        recvonly = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        video = Gst.Caps.from_string(";".join(OFFERS[offer_kind]))
        self.webrtc.emit("add-transceiver", recvonly, video)
        self.webrtc.emit("add-transceiver", recvonly, Gst.Caps.from_string(_OPUS))
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("pad-added", self._on_pad)
        self.offered = False

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def _on_negotiation_needed(self, webrtc: Any) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer, None)
        webrtc.emit("create-offer", None, promise)

    def _on_offer(self, promise: Any, _data: Any) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def _on_gathering(self, webrtc: Any, _spec: Any) -> None:
        complete = GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if webrtc.get_property("ice-gathering-state") == complete and not self.offered:
            self.offered = True
            emit({"offer": webrtc.get_property("local-description").sdp.as_text()})

    def answer(self, text: str) -> None:
        _, message = GstSdp.SDPMessage.new_from_text(text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())

    def _on_pad(self, _webrtc: Any, pad: Any) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        structure = pad.get_current_caps().get_structure(0)
        media, encoding = structure.get_string("media"), structure.get_string("encoding-name")
        if media == "video":
            with self.lock:
                self.report["video_encoding"] = encoding
                self.report["video_payload_type"] = structure.get_int("payload")[1]
            pad.add_probe(Gst.PadProbeType.BUFFER, self._on_first_video_packet, encoding)
        else:
            with self.lock:
                self.report["audio_encoding"] = encoding
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self._on_decoded_pad)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def _on_first_video_packet(self, _pad: Any, info: Any, encoding: str) -> Any:
        buffer = info.get_buffer()
        data = buffer.extract_dup(0, buffer.get_size())
        with self.lock:
            self.report["first_video_packet_keyframe"] = first_packet_is_keyframe(encoding, data)
        return Gst.PadProbeReturn.REMOVE

    def _on_decoded_pad(self, _decode: Any, pad: Any) -> None:
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        pad.add_probe(Gst.PadProbeType.BUFFER, self._on_decoded)

    def _on_decoded(self, pad: Any, info: Any) -> Any:
        structure = pad.get_current_caps().get_structure(0)
        with self.lock:
            if structure.get_name() == "video/x-raw":
                self.report["video_frames"] += 1
                self.report["video_size"] = [
                    structure.get_int("width")[1],
                    structure.get_int("height")[1],
                ]
            else:
                channels = structure.get_int("channels")[1] or 1
                width = 2 if "16" in (structure.get_string("format") or "") else 4
                self.report["audio_samples"] += info.get_buffer().get_size() // channels // width
        return Gst.PadProbeReturn.OK

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            report = dict(self.report)
        state = self.webrtc.get_property("connection-state")
        report["connection_state"] = state.value_nick
        transceiver = self.webrtc.emit("get-transceiver", 0)
        transport = transceiver.get_property("receiver").get_property("transport")
        report["dtls_client"] = transport.get_property("client") if transport else None
        report["dtls_state"] = transport.get_property("state").value_nick if transport else None
        return report


def read_commands(viewer: Viewer, loop: Any) -> None:
    for line in sys.stdin:
        command = json.loads(line)
        if "answer" in command:
            GLib.idle_add(viewer.answer, command["answer"])
        elif "report" in command:
            GLib.idle_add(lambda: emit({"report": viewer.snapshot()}))
        elif "stop" in command:
            break
    GLib.idle_add(loop.quit)


def main() -> None:
    Gst.init(None)
    viewer = Viewer(sys.argv[1])
    loop = GLib.MainLoop()
    threading.Thread(target=read_commands, args=(viewer, loop), daemon=True).start()
    viewer.start()
    loop.run()
    viewer.pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
