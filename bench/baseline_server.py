"""The baseline peercam is measured against: aiortc's standard way, as in its webcam
example. One source track is shared through MediaRelay and every viewer's sender
encodes it again with aiortc's own encoder. Same test pattern, same WHEP signaling.
A viewer whose offer asks for audio also gets the test tone, Opus-encoded per viewer;
aiortc puts both tracks in one media stream, so Chromium lip-syncs them."""

from __future__ import annotations

import argparse
import asyncio
import fractions
import signal
import time

import av
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from peercam.capture.test_pattern import TestPatternCamera
from peercam.capture.test_tone import FRAME_SAMPLES, SAMPLE_RATE, TestToneMicrophone


class PatternTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.camera = TestPatternCamera(width, height, fps)
        self.fps = fps
        self.started: float | None = None
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.count / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        frame = self.camera._capture(time.monotonic()).image
        frame.pts = self.count
        frame.time_base = fractions.Fraction(1, self.fps)
        self.count += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """peercam's test tone in 20 ms frames, paced in real time and stamped by sample
    count, as aiortc's own AudioStreamTrack is."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.tone = TestToneMicrophone(440.0)
        self.started: float | None = None
        self.count = 0

    async def recv(self) -> av.AudioFrame:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.count * FRAME_SAMPLES / SAMPLE_RATE
        if due > now:
            await asyncio.sleep(due - now)
        frame = self.tone._capture(time.monotonic()).samples
        frame.pts = self.count * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.count += 1
        return frame


async def serve(host: str, port: int, width: int, height: int, fps: int, codec: str) -> None:
    relay = MediaRelay()
    source = PatternTrack(width, height, fps)
    tone = ToneTrack()
    peers: set[RTCPeerConnection] = set()

    async def offer(request: web.Request) -> web.Response:
        offer_sdp = await request.text()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.add(pc)
        if "\nm=audio" in offer_sdp:
            pc.addTransceiver(relay.subscribe(tone), direction="sendonly")
        transceiver = pc.addTransceiver(relay.subscribe(source), direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("video")
        assert capabilities is not None
        transceiver.setCodecPreferences(
            [c for c in capabilities.codecs if c.mimeType in (f"video/{codec}", "video/rtx")]
        )
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            body=pc.localDescription.sdp.encode(),
            headers={"Content-Type": "application/sdp", "Location": f"/whep/{id(pc)}"},
        )

    async def hang_up(request: web.Request) -> web.Response:
        for pc in list(peers):
            if str(id(pc)) == request.match_info["id"]:
                peers.discard(pc)
                await pc.close()
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/whep", offer), web.delete("/whep/{id}", hang_up)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"baseline: serving on http://{host}:{port}/", flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await asyncio.gather(*(pc.close() for pc in peers))
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codec", default="H264", choices=["H264", "VP8"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    asyncio.run(serve(args.host, args.port, width, height, args.fps, args.codec))


if __name__ == "__main__":
    main()
