"""A small RTSP client for the tests that need many at once or need to misbehave
(vanish mid-stream): Basic credentials, RTP interleaved on its TCP connection. The
real clients (ffprobe, rtspsrc) are in tests/test_rtsp.py."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from types import TracebackType

from tests.access import TEST_PASSWORD


class RtspClient:
    def __init__(
        self, port: int, path: str = "/live/noaudio", user: str = "admin", password: str = ""
    ) -> None:
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self._port = port
        self._cseq = 0
        secret = password or TEST_PASSWORD
        self._auth = "Basic " + b64encode(f"{user}:{secret}".encode()).decode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.session = ""

    async def __aenter__(self) -> RtspClient:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.vanish()

    def vanish(self) -> None:
        """Close the connection without a TEARDOWN, as a client that dies does."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def request(self, method: str, uri: str, **headers: str) -> tuple[int, dict[str, str]]:
        assert self._reader is not None and self._writer is not None
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"Authorization: {self._auth}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:  # RTP may be on its way before the answer
            first = await self._reader.readexactly(1)
            if first != b"$":
                break
            header = await self._reader.readexactly(3)
            await self._reader.readexactly(int.from_bytes(header[1:], "big"))
        head = first + await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                answer[name.strip().lower()] = value.strip()
        await self._reader.readexactly(int(answer.get("content-length", "0")))
        return int(status_line.split()[1]), answer

    async def play(self) -> None:
        status, _ = await self.request("DESCRIBE", self.url, Accept="application/sdp")
        assert status == 200, status
        status, answer = await self.request(
            "SETUP", f"{self.url}/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
        )
        assert status == 200, status
        self.session = answer["session"].split(";")[0]
        status, _ = await self.request("PLAY", self.url)
        assert status == 200, status

    async def talk(self, channel: int, payload_type: int, payloads: list[bytes]) -> None:
        """Send `payloads` as RTP on interleaved `channel` (an ONVIF back-channel), one
        every 20 ms, as go2rtc does: its own SSRC, sequence and timestamps."""
        assert self._writer is not None
        ssrc, sequence, stamp = 0x1234ABCD, 1000, 5000
        for payload in payloads:
            header = bytes([0x80, payload_type]) + sequence.to_bytes(2, "big")
            packet = header + stamp.to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload
            self._writer.write(b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet)
            await self._writer.drain()
            sequence, stamp = (sequence + 1) % 65536, stamp + len(payload)
            await asyncio.sleep(0.02)

    async def frame_timestamps(self, count: int) -> list[int]:
        """The RTP timestamps of the next `count` whole video frames (marker bit)."""
        assert self._reader is not None
        found: list[int] = []
        while len(found) < count:
            header = await self._reader.readexactly(4)
            assert header[:1] == b"$", header
            packet = await self._reader.readexactly(int.from_bytes(header[2:], "big"))
            if header[1] == 0 and packet[1] & 0x80:
                found.append(int.from_bytes(packet[4:8], "big"))
        return found
