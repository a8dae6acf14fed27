"""A crowd of WHEP viewers in one process, as load for CPU-per-viewer measurements.

Each viewer is a real aiortc peer: ICE, DTLS, SRTP, depacketizing, jitter buffer and
RTCP all run. Only decoding is skipped (a decoder that returns nothing), so that the
load generator, on the same 2 cores, takes as little CPU as it can from the daemon
being measured.

Reads commands on stdin: `add N` connects N more viewers and prints `ready TOTAL`
once each has received video; `bytes` prints `bytes B1 B2 ...`, the RTP payload bytes
each viewer's transport has received so far (so a benchmark can check every viewer really gets the
whole stream); `quit` hangs up all and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

import aiohttp
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame


class DiscardingDecoder(Decoder):
    def decode(self, encoded_frame: JitterFrame) -> list:  # type: ignore[type-arg]
        return []


class Viewer:
    def __init__(self, endpoint: str, http: aiohttp.ClientSession) -> None:
        self.endpoint = endpoint
        self.http = http
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None

    async def connect(self) -> None:
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
        # Nothing is decoded, so no frame event exists: the receiver's byte count
        # is the signal that media arrives.
        while await self.bytes_received() == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def bytes_received(self) -> int:
        # aiortc's inbound-rtp stats carry no byte count; the transport's does (SRTP
        # and RTCP included, which is what crossed the wire).
        report = await self.pc.getStats()
        return sum(
            getattr(stat, "bytesReceived", 0)
            for stat in report.values()
            if getattr(stat, "type", "") == "transport"
        )

    async def close(self) -> None:
        await self.pc.close()
        if self.location:
            base = self.endpoint.rsplit("/whep", 1)[0]
            try:
                async with self.http.delete(base + self.location):
                    pass
            except aiohttp.ClientError:
                pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint", help="WHEP endpoint URL")
    parser.add_argument("--authorization", help="Authorization header value")
    parser.add_argument("--cafile", help="trust this certificate (the daemon's self-signed one)")
    args = parser.parse_args()
    headers = {"Authorization": args.authorization} if args.authorization else {}
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    setattr(rtcrtpreceiver, "get_decoder", lambda codec: DiscardingDecoder())  # noqa: B010
    viewers: list[Viewer] = []
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            if line[0] == "add":
                new = [Viewer(args.endpoint, http) for _ in range(int(line[1]))]
                await asyncio.wait_for(asyncio.gather(*(v.connect() for v in new)), 60)
                viewers += new
                print(f"ready {len(viewers)}", flush=True)
            elif line[0] == "bytes":
                counts = await asyncio.gather(*(v.bytes_received() for v in viewers))
                print("bytes " + " ".join(map(str, counts)), flush=True)
        await asyncio.gather(*(v.close() for v in viewers))


if __name__ == "__main__":
    asyncio.run(main())
