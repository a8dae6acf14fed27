"""A crowd of WHEP viewers in one process, as load for CPU-per-viewer measurements.

Each viewer is a real aiortc peer: ICE, DTLS, SRTP, depacketizing, jitter buffer and
RTCP all run. Only decoding is skipped (a decoder that returns nothing), so that the
load generator, on the same 2 cores, takes as little CPU as it can from the daemon
being measured.

Reads commands on stdin: `add N` connects N more viewers and prints `ready TOTAL`
once each has received video; `bytes` prints `bytes B1 B2 ...`, the bytes each
viewer's transport has received so far, and `frames` prints `frames F1 F2 ...`, the
complete frames each has reassembled (so a benchmark can check every viewer really
gets the whole stream, at full rate); `quit` hangs up all and exits.

Viewers speak WHEP to the endpoint given, or Janus's HTTP API with `--janus API`, or
are RTSP clients (RTP interleaved on their TCP connection) with `--rtsp URL`.
With `--audio`, WHEP viewers ask for audio too (Janus viewers take what Janus offers);
audio is received and depacketized like video, and not counted as frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame


class CountingDecoder(Decoder):
    """Counts the frames the jitter buffer completes and decodes none of them."""

    def __init__(self) -> None:
        self.frames = 0

    def decode(self, encoded_frame: JitterFrame) -> list:  # type: ignore[type-arg]
        self.frames += 1
        return []


# aiortc makes a receiver's decoder in the receiver's own decoder thread when the first
# frame arrives; a viewer finds its decoder again by that thread.
DECODERS: dict[threading.Thread, CountingDecoder] = {}


def counting_decoder(codec: object) -> CountingDecoder:
    decoder = CountingDecoder()
    DECODERS[threading.current_thread()] = decoder
    return decoder


class Viewer:
    """One receiving peer; subclasses say how it is signalled."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def connect(self) -> None:
        await self.signal()
        # Nothing is decoded, so no frame event exists: the receiver's byte count
        # is the signal that media arrives.
        while await self.bytes_received() == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def signal(self) -> None:
        raise NotImplementedError

    async def bytes_received(self) -> int:
        # aiortc's inbound-rtp stats carry no byte count; the transport's does (SRTP
        # and RTCP included, which is what crossed the wire).
        report = await self.pc.getStats()
        return sum(
            getattr(stat, "bytesReceived", 0)
            for stat in report.values()
            if getattr(stat, "type", "") == "transport"
        )

    def frames(self) -> int:
        counted = 0
        for receiver in self.pc.getReceivers():
            if receiver.track.kind != "video":
                continue
            thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread", None)
            decoder = DECODERS.get(thread) if thread is not None else None
            counted += decoder.frames if decoder is not None else 0
        return counted

    async def close(self) -> None:
        await self.pc.close()


class WhepViewer(Viewer):
    def __init__(self, http: aiohttp.ClientSession, endpoint: str, audio: bool) -> None:
        super().__init__(http)
        self.endpoint = endpoint
        self.audio = audio
        self.location: str | None = None

    async def signal(self) -> None:
        if self.audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with self.http.post(
            self.endpoint,
            data=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as response:
            answer = await response.text()
            if response.status != 201:
                raise RuntimeError(f"{response.status}: {answer}")
            self.location = response.headers.get("Location")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def close(self) -> None:
        await super().close()
        if self.location:
            base = self.endpoint.rsplit("/whep", 1)[0]
            try:
                async with self.http.delete(base + self.location):
                    pass
            except aiohttp.ClientError:
                pass


class JanusViewer(Viewer):
    """Janus's streaming plugin: it offers, the viewer answers; a long poll keeps the
    session alive (and takes Janus's events)."""

    def __init__(self, http: aiohttp.ClientSession, api: str) -> None:
        super().__init__(http)
        self.api = api
        self.session_url: str | None = None
        self.poller: asyncio.Task[None] | None = None

    async def _post(self, url: str, body: dict[str, object]) -> dict[str, Any]:
        message = {**body, "transaction": uuid.uuid4().hex}
        async with self.http.post(url, data=json.dumps(message)) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
            return reply

    async def _events(self) -> list[dict[str, Any]]:
        assert self.session_url is not None
        async with self.http.get(f"{self.session_url}?maxev=5") as response:
            events = await response.json(content_type=None)
        return events if isinstance(events, list) else [events]

    async def signal(self) -> None:
        session = (await self._post(self.api, {"janus": "create"}))["data"]["id"]
        self.session_url = f"{self.api}/{session}"
        attached = await self._post(
            self.session_url, {"janus": "attach", "plugin": "janus.plugin.streaming"}
        )
        handle_url = f"{self.session_url}/{attached['data']['id']}"
        await self._post(handle_url, {"janus": "message", "body": {"request": "watch", "id": 1}})
        offer = None
        while offer is None:
            offer = next((e["jsep"] for e in await self._events() if "jsep" in e), None)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        await self._post(
            handle_url, {"janus": "message", "body": {"request": "start"}, "jsep": answer}
        )
        self.poller = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while True:
            try:
                await self._events()
            except aiohttp.ClientError:
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        await super().close()
        if self.session_url:
            try:
                await self._post(self.session_url, {"janus": "destroy"})
            except aiohttp.ClientError:
                pass


class RtspViewer(Viewer):
    """An RTSP client as an NVR is one: DESCRIBE, SETUP each track over TCP
    interleaved, PLAY, then read; frames are counted by the video's marker bit."""

    def __init__(self, http: aiohttp.ClientSession, url: str, authorization: str) -> None:
        super().__init__(http)
        self.url = url
        self.authorization = authorization
        self.received = 0
        self.video_frames = 0
        self._cseq = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    async def _request(self, method: str, url: str, *headers: str) -> dict[str, str]:
        assert self._reader is not None and self._writer is not None
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", *headers]
        if self.authorization:
            lines.append(f"Authorization: {self.authorization}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        # A server may send media before it answers (gst-rtsp-server's shared media
        # does after PLAY): interleaved frames ahead of the answer are skipped.
        while (first := await self._reader.readexactly(1)) == b"$":
            size = await self._reader.readexactly(3)
            await self._reader.readexactly(int.from_bytes(size[1:], "big"))
        head = (first + await self._reader.readuntil(b"\r\n\r\n")).decode(errors="replace")
        status = head.split(" ", 2)[1]
        if status != "200":
            raise RuntimeError(f"RTSP {method}: {head.splitlines()[0]}")
        answer = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        body = await self._reader.readexactly(int(answer.get("content-length", "0")))
        answer["body"] = body.decode()
        return answer

    async def signal(self) -> None:
        split = urlsplit(self.url)
        self._reader, self._writer = await asyncio.open_connection(split.hostname, split.port)
        sdp = (await self._request("DESCRIBE", self.url, "Accept: application/sdp"))["body"]
        controls = [line[len("a=control:"):] for line in sdp.splitlines()
                    if line.startswith("a=control:") and line != "a=control:*"]  # fmt: skip
        session = ""
        for index, control in enumerate(controls):
            extra = [f"Session: {session}"] if session else []
            reply = await self._request(
                "SETUP", f"{self.url}/{control}",
                f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}", *extra,
            )  # fmt: skip
            session = reply["session"].split(";")[0]
        await self._request("PLAY", self.url, f"Session: {session}")
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            header = await self._reader.readexactly(4)
            packet = await self._reader.readexactly(int.from_bytes(header[2:], "big"))
            self.received += 4 + len(packet)
            if header[1] == 0 and len(packet) > 1 and packet[1] & 0x80:
                self.video_frames += 1

    async def bytes_received(self) -> int:
        return self.received

    def frames(self) -> int:
        return self.video_frames

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
        await super().close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint", nargs="?", help="WHEP endpoint URL")
    parser.add_argument("--janus", help="Janus HTTP API URL, instead of a WHEP endpoint")
    parser.add_argument("--rtsp", help="an rtsp:// URL: RTSP clients instead of WebRTC viewers")
    parser.add_argument("--authorization", help="Authorization header value")
    parser.add_argument("--cafile", help="trust this certificate (the daemon's self-signed one)")
    parser.add_argument("--audio", action="store_true", help="WHEP viewers ask for audio too")
    args = parser.parse_args()
    headers = {"Authorization": args.authorization} if args.authorization else {}
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    setattr(rtcrtpreceiver, "get_decoder", counting_decoder)  # noqa: B010
    viewers: list[Viewer] = []

    def make_viewer(http: aiohttp.ClientSession) -> Viewer:
        if args.janus:
            return JanusViewer(http, args.janus)
        if args.rtsp:
            return RtspViewer(http, args.rtsp, args.authorization or "")
        return WhepViewer(http, args.endpoint, args.audio)

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            if line[0] == "add":
                new = [make_viewer(http) for _ in range(int(line[1]))]
                await asyncio.wait_for(asyncio.gather(*(v.connect() for v in new)), 60)
                viewers += new
                print(f"ready {len(viewers)}", flush=True)
            elif line[0] == "bytes":
                counts = await asyncio.gather(*(v.bytes_received() for v in viewers))
                print("bytes " + " ".join(map(str, counts)), flush=True)
            elif line[0] == "frames":
                print("frames " + " ".join(str(v.frames()) for v in viewers), flush=True)
        await asyncio.gather(*(v.close() for v in viewers))


if __name__ == "__main__":
    asyncio.run(main())
