"""A SIP video phone for the tests, as small as one can be: it answers the first INVITE
with audio (PCMU) and H.264 video it only receives, and decodes what arrives with
FFmpeg (depacketized by aiortc's RFC 6184 parser). Debian's baresip has no H.264,
so this stands in for a desk video phone; it speaks SIP through peercam's own message
module, and only as far as a called phone must (200, then the ACK and BYE)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import av
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.rtp import RtcpPsfbPacket, RtpPacket

from peercam.sip.message import Address, Request, Response, parse, response_to

SDP = """v=0\r
o=phone 1 1 IN IP4 127.0.0.1\r
s=-\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=audio {audio} RTP/AVP 0\r
a=rtpmap:0 PCMU/8000\r
m=video {video} RTP/AVP 97\r
a=rtpmap:97 H264/90000\r
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r
a=recvonly\r
"""


@dataclass
class Received:
    frames: list[tuple[int, int]] = field(default_factory=list)  # decoded (width, height)
    keyframe_requests_sent: int = 0
    invite: Request | None = None
    answer: Response | None = None  # to its own call to the door
    reanswer: Response | None = None  # to its re-INVITE in the door's call


class VideoPhone:
    def __init__(self) -> None:
        self.sip = _bound()
        self.audio = _bound()
        self.video = _bound(even=True)
        self.port = self.sip.getsockname()[1]
        self.received = Received()
        self._door = ""  # the door's Contact, once it re-INVITEs
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._answer, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def call(self, door_port: int) -> None:
        """Call the door (its SIP port on loopback) offering the same audio and video;
        the answer lands in `received.answer`, and is ACKed."""
        invite = Request("INVITE", f"sip:door@127.0.0.1:{door_port}")
        for name, value in (
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bKvideo1"),
            ("Max-Forwards", "70"), ("From", "<sip:videophone@127.0.0.1>;tag=vp1"),
            ("To", "<sip:door@127.0.0.1>"), ("Call-ID", "video-call-1"), ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:videophone@127.0.0.1:{self.port}>"),
            ("Content-Type", "application/sdp"),
        ):  # fmt: skip
            invite.headers.add(name, value)
        invite.body = self._sdp()
        self.received.invite = invite  # what it offered; its own answers are not needed
        self.sip.sendto(invite.to_bytes(), ("127.0.0.1", door_port))

    def _sdp(self, video_direction: str = "recvonly") -> bytes:
        return (
            SDP.format(audio=self.audio.getsockname()[1], video=self.video.getsockname()[1])
            .replace("a=recvonly", f"a={video_direction}")
            .encode()
        )

    def reinvite(self, video_direction: str) -> None:
        """In the call the door made to it: a new offer with the video `inactive` (on
        hold) or `recvonly` again; the door's answer lands in `received.reanswer`."""
        invite = self.received.invite
        assert invite is not None
        request = Request("INVITE", Address.parse(invite.headers.require("Contact")).uri)
        for name, value in (
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bKre{video_direction}"),
            ("Max-Forwards", "70"),
            ("From", invite.headers.require("To") + ";tag=video1"),
            ("To", invite.headers.require("From")), ("Call-ID", invite.headers.require("Call-ID")),
            ("CSeq", f"{2 if video_direction == 'inactive' else 3} INVITE"),
            ("Contact", f"<sip:videophone@127.0.0.1:{self.port}>"),
            ("Content-Type", "application/sdp"),
        ):  # fmt: skip
            request.headers.add(name, value)
        request.body = self._sdp(video_direction)
        self.received.reanswer = None
        self._door = Address.parse(invite.headers.require("Contact")).uri
        host, port = self._door.split("@")[1].split(";")[0].split(":")
        self.sip.sendto(request.to_bytes(), (host, int(port)))

    def _answer(self) -> None:
        while not self._stopping.is_set():
            try:
                data, source = self.sip.recvfrom(65_535)
            except TimeoutError:
                continue
            message = parse(data)
            if isinstance(message, Response):
                if message.status >= 200 and "INVITE" in message.headers.require("CSeq"):
                    if self.received.invite is not None and self._door:
                        self.received.reanswer = message  # to its re-INVITE
                    elif self.received.answer is None:
                        self.received.answer = message
                    self.sip.sendto(self._ack(message).to_bytes(), source)
                continue
            if message.method == "ACK":
                continue
            if message.method == "INVITE" and self.received.invite is None:
                self.received.invite = message
                ok = response_to(message, 200, "OK", to_tag="video1")
                ok.headers.add("Contact", f"<sip:videophone@127.0.0.1:{self.port}>")
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = self._sdp()
                self.sip.sendto(ok.to_bytes(), source)
            else:
                self.sip.sendto(response_to(message, 200, "OK").to_bytes(), source)

    def _watch(self) -> None:
        decoder = av.CodecContext.create("h264", "r")
        access_unit = b""
        while not self._stopping.is_set():
            try:
                data, source = self.video.recvfrom(65_535)
            except TimeoutError:
                continue
            packet = RtpPacket.parse(data)
            access_unit += H264PayloadDescriptor.parse(packet.payload)[1]
            if not packet.marker:
                continue
            try:
                frames = decoder.decode(av.Packet(access_unit))
            except av.error.InvalidDataError:
                frames = []
            access_unit = b""
            for frame in frames:
                self.received.frames.append((frame.width, frame.height))
            if len(self.received.frames) == 5 and not self.received.keyframe_requests_sent:
                # A picture lost, as a phone says it: RTCP PLI to the sender's RTCP port.
                pli = RtcpPsfbPacket(fmt=1, ssrc=1234, media_ssrc=packet.ssrc)
                self.video.sendto(bytes(pli), (source[0], source[1] + 1))
                self.received.keyframe_requests_sent += 1

    def _ack(self, answer: Response) -> Request:
        ack = Request("ACK", "sip:door@127.0.0.1")
        for name in ("From", "To", "Call-ID"):
            ack.headers.add(name, answer.headers.require(name))
        ack.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bKack1")
        ack.headers.add("CSeq", "1 ACK")
        ack.headers.add("Max-Forwards", "70")
        return ack

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(2)
        for sock in (self.sip, self.audio, self.video):
            sock.close()


def _bound(even: bool = False) -> socket.socket:
    for _ in range(50):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        if not even or sock.getsockname()[1] % 2 == 0:
            sock.settimeout(0.2)
            return sock
        sock.close()
    raise RuntimeError("no even port")
