"""Viewers' RTP sent a frame at a time (rtc/frame_sender.py, rtp_header.py,
pair_socket.py): headers byte for byte as aiortc writes them, frames cut into
segmented sends the kernel splits right, a real loss repaired by RTX through it, and
the aiortc internals it takes over still where it expects them."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioice.turn import TurnTransport
from aiortc import RTCConfiguration, RTCPeerConnection, clock, rtp
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from hypothesis import given
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from peercam.media import EncodedFrame
from peercam.rtc import playout_delay
from peercam.rtc.frame_sender import DTLS_ATTRIBUTES, SENDER_ATTRIBUTES, FrameSender
from peercam.rtc.pair_socket import (
    MAX_GSO_BYTES,
    MAX_SEGMENTS,
    TURN_INNER_PROTOCOL,
    PairSocket,
    equal_runs,
)
from peercam.rtc.rtp_header import HeaderTemplate, abs_send_time, ntp_now
from peercam.rtc.shared_track import SharedFrameTrack
from tests.inprocess_daemon import InProcessDaemon, pattern_config
from tests.whep_viewer import WhepViewer

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _map(extensions: list[tuple[int, str]], playout: bool = False) -> rtp.HeaderExtensionsMap:
    headers = playout_delay.PlayoutDelayHeaders(0, 100) if playout else rtp.HeaderExtensionsMap()
    headers.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions]
        )
    )
    return headers


@pytest.mark.parametrize(
    "extensions, playout",
    [
        ([(1, MID), (3, ABS)], False),  # what aiortc negotiates for video
        ([(4, MID), (2, ABS), (12, playout_delay.URI)], True),  # Chromium's ids, with the delay
        ([(1, MID)], False),  # no abs-send-time
        ([(15, MID), (16, ABS)], False),  # ids beyond 14: the two-byte form
        ([], False),  # no extensions at all
    ],
)
def test_a_filled_header_is_what_aiortc_serializes(
    extensions: list[tuple[int, str]], playout: bool
) -> None:
    headers = _map(extensions, playout)
    template = HeaderTemplate.build(headers, 102, 0x12345678, "1")
    for sequence, timestamp, marker, ntp in [
        (0, 0, False, 0),
        (65535, 0xFFFFFFFF, True, 0xFFFFFFFFFFFFFFFF),
        (12345, 987654321, False, 0x1234_5678_9ABC_DEF0),
        (1, 90_000, True, 0x0000_0001_8000_0000),
    ]:
        packet = rtp.RtpPacket(
            payload_type=102, marker=int(marker), sequence_number=sequence, timestamp=timestamp,
            ssrc=0x12345678, payload=b"payload",
        )  # fmt: skip
        packet.extensions.mid = "1"
        packet.extensions.abs_send_time = abs_send_time(ntp)
        filled = template.fill(sequence, timestamp, marker, abs_send_time(ntp))
        assert bytes(filled) + b"payload" == packet.serialize(headers)


def test_the_ntp_time_is_aiortcs_clock_without_its_datetimes() -> None:
    """Sender reports pair it with RTP timestamps, abs-send-time is cut from it: it
    must be aiortc's clock (epoch 1900, 32.32 fixed point), read cheaper."""
    for _ in range(20):
        before = clock.current_ntp_time()
        ours = ntp_now()
        after = clock.current_ntp_time()
        slack = 1 << 22  # a millisecond: datetime's microseconds, a float's rounding
        assert before - slack <= ours <= after + slack


@given(st.lists(st.sampled_from([1200, 1199, 1100, 700, 64, 9000]), max_size=200))
def test_runs_are_equal_sizes_with_only_the_last_shorter(sizes: list[int]) -> None:
    runs = equal_runs(sizes)
    assert [i for run in runs for i in run] == list(range(len(sizes)))
    for run in runs:
        first, *rest = (sizes[i] for i in run)
        assert all(size == first for size in rest[:-1])
        assert not rest or rest[-1] <= first
        assert len(run) <= MAX_SEGMENTS and (len(run) == 1 or first * len(run) <= MAX_GSO_BYTES)


class _Pair:
    """What PairSocket reads of aioice's CandidatePair: its protocol's transport and
    the remote address."""

    def __init__(self, transport: asyncio.DatagramTransport, remote: tuple[str, int]) -> None:
        self.protocol = type("Protocol", (), {"transport": transport})()
        self.remote_addr = remote


async def _received(receiver: socket.socket, count: int) -> list[bytes]:
    datagrams: list[bytes] = []
    async with asyncio.timeout(5):
        while len(datagrams) < count:
            try:
                datagrams.append(receiver.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.01)
    return datagrams


@contextlib.asynccontextmanager
async def _loopback_pair() -> AsyncIterator[tuple[PairSocket, socket.socket]]:
    """A PairSocket on a real asyncio datagram transport, sending to a socket of the
    test's own on loopback."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        sender = PairSocket(_Pair(transport, receiver.getsockname()))
        try:
            yield sender, receiver
        finally:
            sender.close()
            transport.close()


async def test_a_frame_arrives_as_the_same_datagrams_in_order() -> None:
    """Real sockets on loopback: sizes as an H.264 frame's packets come (equal
    fragments, one shorter, a different run), each datagram distinct."""
    sizes = [1200] * 5 + [700] + [1100] * 3 + [40] + [1200] * 70
    frame = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    async with _loopback_pair() as (sender, receiver):
        assert sender.direct and sender.segmenting
        sender.send(frame)
        assert await _received(receiver, len(frame)) == frame
        assert sender.segmenting and sender.queued == 0


class _RefusingSegments:
    """A kernel or route without UDP segmentation offload: sendmsg with UDP_SEGMENT
    fails as Linux fails it there (EIO from a device that cannot checksum it)."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real

    def sendmsg(self, *args: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        return self.real.sendto(data, address)

    def close(self) -> None:
        self.real.close()


async def test_a_refused_segmented_send_falls_back_to_one_by_one() -> None:
    frame = [b"a" * 1000, b"b" * 1000, b"c" * 500, b"d" * 1000]
    async with _loopback_pair() as (sender, receiver):
        sender._socket = _RefusingSegments(sender._socket)  # type: ignore[arg-type, assignment]
        sender.send(frame)
        sender.send(frame)
        assert not sender.segmenting
        assert await _received(receiver, 8) == frame + frame


async def test_the_aiortc_internals_it_takes_over_are_there() -> None:
    """Fails on an aiortc upgrade that renames or moves any of them."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    for name in SENDER_ATTRIBUTES:
        assert hasattr(sender, name), name
    for name in DTLS_ATTRIBUTES:
        assert hasattr(sender.transport, name), name
    connection = sender.transport.transport._connection
    assert isinstance(connection._nominated, dict)
    installed = FrameSender(sender)
    assert sender._run_rtp == installed.run and sender._retransmit == installed.retransmit
    await pc.close()


def _made_socket(installed: FrameSender) -> PairSocket | None:
    return installed._socket


async def test_no_frame_is_handed_over_while_a_relayed_one_is_on_its_way() -> None:
    """`run` awaits a relayed frame's packets one by one before it takes their numbers:
    a frame offered by the hub meanwhile queues behind it (were the pair to turn direct
    mid-frame, it would otherwise reuse those numbers and overtake it). Otherwise, on a
    pair with a socket of its own, the hand-over sends at once."""
    frame = EncodedFrame("h264", b"x", True, 0.0, 0, (b"payload",), 0)
    async with _connected_sender() as (installed, receiver):
        first = installed._sequence
        installed._relaying = True
        assert installed._deliver(frame) is False
        assert _made_socket(installed) is None and installed._sequence == first
        installed._relaying = False
        assert installed._deliver(frame) is True
        (datagram,) = await _received(receiver, 1)
        assert int.from_bytes(datagram[2:4], "big") == first
        assert installed._sequence == (first + 1) & 0xFFFF
        made = _made_socket(installed)
        nominated = installed._sender.transport.transport._connection._nominated[1]
        assert made is not None and made.pair is nominated


async def test_a_hand_over_that_fails_declines_instead_of_raising_into_the_hub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub's publish serves every viewer: one viewer's failure (here no file
    descriptor left for its socket) must come back as a declined frame, not an
    exception; its sender's own task then meets it and ends that viewer."""

    def no_descriptors(self: PairSocket, pair: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    async with _connected_sender() as (installed, _):
        first = installed._sequence
        monkeypatch.setattr(PairSocket, "__init__", no_descriptors)
        frame = EncodedFrame("h264", b"x", True, 0.0, 0, (b"payload",), 0)
        assert installed._deliver(frame) is False
        assert installed._sequence == first and not installed._history


async def test_a_packet_sent_again_under_its_own_number_is_the_same_bytes() -> None:
    """Without RTX a NACK is answered with the packet itself: the same header (its
    original abs-send-time) and payload, so SRTP never seals two different packets
    under one nonce; and no packet kept is older than SRTP's 1024-packet send window."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    installed = FrameSender(sender)
    headers = _map([(1, MID), (3, ABS)])
    template = installed._template = HeaderTemplate.build(headers, 102, 1234, "0")
    sent: list[bytes] = []

    async def capture(packet: bytes) -> None:
        sent.append(packet)

    sender.transport._send_rtp = capture  # type: ignore[method-assign, assignment]
    ntp = 0x0000_1234_8000_0000
    frame = EncodedFrame("h264", b"x", True, 0.0, 90, (b"first", b"second"), 0)
    first = installed._sequence
    numbered = installed._number(frame, ntp)  # an hour after 1900: never "now"
    headers_sent = installed._headers(numbered)
    originals = [bytes(h) + p for h, p in zip(headers_sent, frame.payloads, strict=True)]
    installed._sent(numbered, ntp, frame.payload_bytes)
    await installed.retransmit((first + 1) & 0xFFFF)
    assert sent == [originals[1]]
    assert template.abs_send_time_at is not None
    for number in range(300):  # 1200 packets more
        more = EncodedFrame("h264", b"x", False, 0.0, number, (b"p",) * 4, 0)
        installed._sent(installed._number(more, ntp), ntp, more.payload_bytes)
    assert 996 < installed._history_packets <= 1000 < 1024
    await pc.close()


def test_a_lost_packet_is_sent_again_as_rtx_and_the_viewer_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One datagram of the daemon's video dropped before it reaches the socket: the
    viewer (aiortc, which negotiates RTX and sends NACKs) asks for it, the frame sender
    sends it again as RTX from its history, and the viewer counts no packet lost."""
    dropped: list[int] = []
    retransmitted: list[int] = []
    send = PairSocket.send
    retransmit = FrameSender.retransmit

    frames = [0]

    def dropping_one(self: PairSocket, datagrams: list[bytes]) -> None:
        frames[0] += 1
        if not dropped and len(datagrams) >= 3 and frames[0] >= 40:
            dropped.append(len(datagrams[1]))
            datagrams = [datagrams[0], *datagrams[2:]]
        send(self, datagrams)

    async def counting(self: FrameSender, sequence_number: int) -> None:
        retransmitted.append(sequence_number)
        await retransmit(self, sequence_number)

    monkeypatch.setattr(PairSocket, "send", dropping_one)
    monkeypatch.setattr(FrameSender, "retransmit", counting)
    config = pattern_config(tmp_path, "640x480")

    async def watch(daemon: InProcessDaemon) -> dict[str, Any]:
        async with WhepViewer(daemon.access, video_codec="video/H264") as viewer:
            await viewer.video_frames(70, within=30)
            stats = await viewer.pc.getStats()
            return next(s.__dict__ for s in stats.values() if s.type == "inbound-rtp")

    with InProcessDaemon(config) as daemon:
        inbound = asyncio.run(watch(daemon))
    assert dropped, "no frame of 3 or more packets to drop one from"
    assert retransmitted, "the viewer's NACK was not answered"
    assert inbound["packetsLost"] == 0, inbound


def test_a_viewer_skipped_to_the_next_keyframe_sees_no_gap_in_its_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer whose sender falls behind for half a second once, with room for only
    two frames: its queue overflows, the hub drops what it held and waits for a
    keyframe. The frames not sent were never numbered: the viewer counts no packet
    lost and decodes on after the skip. Frames go through the queue here, as for a
    relayed viewer (a direct hand-over never falls behind the loop)."""
    recv = SharedFrameTrack.recv
    frames = [0]

    async def stalling_once(self: SharedFrameTrack) -> EncodedFrame:
        frame = await recv(self)
        if self.kind == "video":
            frames[0] += 1
            if frames[0] == 40:
                await asyncio.sleep(0.5)  # this viewer only: the others' frames go on
        return frame

    monkeypatch.setattr(FrameSender, "_deliver", lambda self, frame: False)
    monkeypatch.setattr(SharedFrameTrack, "recv", stalling_once)
    config = pattern_config(tmp_path, viewers={"queue_frames": 2})

    async def watch(daemon: InProcessDaemon) -> tuple[dict[str, Any], str]:
        async with WhepViewer(daemon.access, video_codec="video/H264") as viewer:
            await viewer.video_frames(80, within=40)
            stats = await viewer.pc.getStats()
            inbound = next(s.__dict__ for s in stats.values() if s.type == "inbound-rtp")
            metrics = await asyncio.to_thread(daemon.access.urlopen, "/metrics")
            return inbound, metrics.decode()

    with InProcessDaemon(config) as daemon:
        inbound, metrics = asyncio.run(watch(daemon))
    dropped = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("peercam_viewer_dropped_frames_total")
    )
    assert frames[0] >= 40 and dropped > 0, (frames[0], dropped)
    assert inbound["packetsLost"] == 0, inbound


def test_frames_leave_as_the_hub_publishes_them_without_waking_the_viewers_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a socket of its own, every frame of a viewer's video is sent from within
    the hub's publish: none goes through the viewer's queue and task, and the viewer
    receives all of them."""
    deliver = FrameSender._deliver
    recv = SharedFrameTrack.recv
    direct: list[bool] = []
    queued = [0]

    def counting(self: FrameSender, frame: EncodedFrame) -> bool:
        taken = deliver(self, frame)
        direct.append(taken)
        return taken

    async def counting_queued(self: SharedFrameTrack) -> EncodedFrame:
        frame = await recv(self)
        queued[0] += 1
        return frame

    monkeypatch.setattr(FrameSender, "_deliver", counting)
    monkeypatch.setattr(SharedFrameTrack, "recv", counting_queued)

    async def watch(daemon: InProcessDaemon) -> dict[str, Any]:
        async with WhepViewer(daemon.access, video_codec="video/H264") as viewer:
            await viewer.video_frames(45, within=30)
            stats = await viewer.pc.getStats()
            return next(s.__dict__ for s in stats.values() if s.type == "inbound-rtp")

    with InProcessDaemon(pattern_config(tmp_path)) as daemon:
        inbound = asyncio.run(watch(daemon))
    assert len(direct) >= 45 and all(direct), direct
    assert queued[0] == 0
    assert inbound["packetsLost"] == 0, inbound


@contextlib.asynccontextmanager
async def _sender_on(
    pair: Any, rtx_payload_type: int | None = None, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[FrameSender]:
    """A FrameSender on a real peer connection's sender, as after the handshake: DTLS
    connected with an SRTP key, `pair` nominated, RTX negotiated with
    `rtx_payload_type` if given."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    installed = FrameSender(sender, clock)
    installed._template = HeaderTemplate.build(rtp.HeaderExtensionsMap(), 102, 1234, None)
    setattr(sender, "_RTCRtpSender__rtx_payload_type", rtx_payload_type)  # noqa: B010
    dtls = sender.transport
    dtls._state = State.CONNECTED
    dtls._tx_srtp = Session(Policy(key=bytes(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    dtls.transport._connection._nominated[1] = pair
    try:
        yield installed
    finally:
        made = _made_socket(installed)
        if made is not None:
            made.close()
        dtls.transport._connection._nominated.clear()
        dtls._state = State.NEW
        await pc.close()


@contextlib.asynccontextmanager
async def _connected_sender(
    rtx_payload_type: int | None = None, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[tuple[FrameSender, socket.socket]]:
    """`_sender_on` a pair whose socket sends to the test's own on loopback."""
    async with _loopback_pair() as (pair_socket, receiver):
        async with _sender_on(pair_socket.pair, rtx_payload_type, clock) as installed:
            yield installed, receiver


def _drain(receiver: socket.socket) -> list[bytes]:
    datagrams = []
    with contextlib.suppress(BlockingIOError):
        while True:
            datagrams.append(receiver.recv(65536))
    return datagrams


async def test_a_probe_sends_rtx_copies_of_the_frames_at_the_rate_asked() -> None:
    """A probe of a viewer's path (rtc/layer_chooser.py) is copies of the frame just
    sent, as RTX (its own payload type and sequence, the original number first in the
    payload), as many as the rate asked makes due since the last frame; none without
    RTX negotiated."""
    now = [100.0]
    payloads = (b"a" * 1000, b"b" * 1000, b"c" * 500)
    async with _connected_sender(103, lambda: now[0]) as (installed, receiver):
        installed.probe(800_000)  # 100 000 bytes a second
        for number in range(3):
            frame = EncodedFrame("h264", b"x", number == 0, 0.0, number * 3000, payloads, 0)
            first = installed._sequence
            assert installed._deliver(frame) is True
            now[0] += 1 / 30
        await asyncio.sleep(0.05)
        datagrams = _drain(receiver)
        media = [d for d in datagrams if d[1] & 0x7F == 102]
        copies = [d for d in datagrams if d[1] & 0x7F == 103]
        assert len(media) == 9  # every frame whole
        # The first frame only starts the clock; the next two make 2/30 s of 100 000
        # bytes a second due: 6 667 bytes, give or take a packet (and SRTP's tags).
        copied = sum(len(d) for d in copies)
        assert 5_500 < copied < 8_500, [len(d) for d in copies]
        # An RTX copy carries the original's number first; SRTP hides the rest, so the
        # check is on the sequence numbers of the RTX stream: consecutive.
        numbers = [int.from_bytes(d[2:4], "big") for d in copies]
        assert numbers == [(numbers[0] + i) & 0xFFFF for i in range(len(numbers))]
        assert installed._sequence == (first + 3) & 0xFFFF  # copies take no media numbers
        # And sender reports, more often than aiortc's, each remembered for the round
        # trip the viewer's next report will give.
        reports = [d for d in datagrams if d[1] == 200]  # RTCP SR (SRTCP keeps its header)
        assert len(reports) == 1  # the frames were 1/30 s apart: one report in 0.2 s
        lsr = installed._sender.__dict__["_RTCRtpSender__lsr"]
        assert installed.report_sent_at(lsr) is not None
        assert installed.can_probe
        # Not asked again (the viewer's RTCP stopped): the probe ends by itself.
        now[0] += 3
        frame = EncodedFrame("h264", b"x", False, 0.0, 9000, payloads, 0)
        assert installed._deliver(frame) is True
        await asyncio.sleep(0.05)
        assert [d for d in _drain(receiver) if d[1] & 0x7F == 103] == []
        assert installed.padding_bitrate == 0

    async with _connected_sender(None, lambda: now[0]) as (installed, receiver):
        assert not installed.can_probe
        installed.probe(800_000)
        for number in range(3):
            frame = EncodedFrame("h264", b"x", number == 0, 0.0, number * 3000, payloads, 0)
            installed._deliver(frame)
            now[0] += 1 / 30
        await asyncio.sleep(0.05)
        media = [d for d in _drain(receiver) if d[1] & 0x7F in (102, 103)]
        assert len(media) == 9  # the frames, no copy


def test_aioices_turn_transport_keeps_its_client_protocol_where_pair_socket_looks() -> None:
    """PairSocket tells a relay over TCP/TLS by the protocol aioice's TurnTransport
    wraps: an aioice upgrade that moves it must fail here, not probe over TCP."""
    inner = asyncio.Protocol()
    assert getattr(TurnTransport(inner), TURN_INNER_PROTOCOL) is inner  # type: ignore[arg-type]


class _Relay:
    """What PairSocket reads of aioice's TurnTransport: no socket of its own, and the
    TURN client protocol inside (a datagram one for UDP, a stream one for TCP/TLS)."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        setattr(self, TURN_INNER_PROTOCOL, inner)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _QueuedTrack:
    """A sender's track that hands over the frames put in its queue."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[EncodedFrame] = asyncio.Queue()

    async def recv(self) -> EncodedFrame:
        return await self.frames.get()

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("relay", ["udp", "tcp"])
async def test_a_probe_goes_through_aiortcs_path_over_a_udp_relay_and_not_over_tcp(
    relay: str,
) -> None:
    """Over a relay, frames go through aiortc's DTLS transport (which protects and
    counts), and so does a probe: RTX copies at the rate asked and a sender report.
    Without it a viewer behind TURN, once moved to the low layer, would stay there: its
    browser's estimate never reaches the main layer's rate by itself. Not over TURN by
    TCP or TLS, where an overfilling probe would queue ahead of the frames."""
    now = [100.0]
    payloads = (b"a" * 1000, b"b" * 1000, b"c" * 500)
    inner = asyncio.DatagramProtocol() if relay == "udp" else asyncio.Protocol()
    pair = _Pair(_Relay(inner), ("10.0.0.1", 5000))  # type: ignore[arg-type]
    async with _sender_on(pair, 103, lambda: now[0]) as installed:
        sender = installed._sender
        track = _QueuedTrack()
        setattr(sender, "_RTCRtpSender__track", track)  # noqa: B010
        dtls = sender.transport
        relayed: list[bytes] = []

        async def through_the_relay(data: bytes) -> None:
            relayed.append(data)

        setattr(dtls.transport, "_send", through_the_relay)  # noqa: B010
        codec = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
        running = asyncio.create_task(installed.run(codec))
        try:
            for number in range(4):
                frame = EncodedFrame("h264", b"x", number == 0, 0.0, number * 3000, payloads, 0)
                await track.frames.put(frame)
                await asyncio.sleep(0.02)
                if number == 0:
                    assert installed._socket is not None and not installed._socket.direct
                    assert installed.can_probe == (relay == "udp")
                    installed.probe(800_000 if installed.can_probe else 0)
                else:
                    now[0] += 1 / 30
            media = [d for d in relayed if d[1] & 0x7F == 102]
            copies = [d for d in relayed if d[1] & 0x7F == 103]
            reports = [d for d in relayed if d[1] == 200]
            assert len(media) == 12  # every frame whole, through the relay
            if relay == "tcp":
                assert copies == [] and reports == []
                return
            # The first probed frame starts the clock; the next two make 2/30 s of
            # 100 000 bytes a second due: 6 667 bytes, give or take a packet (and SRTP's
            # tags).
            assert 5_500 < sum(len(d) for d in copies) < 8_500, [len(d) for d in copies]
            # Protected: each copy (12-byte header, the original's number, its payload)
            # leaves longer by SRTP's 10-byte tag; the RTX stream's numbers run on.
            sizes = [len(d) for d in copies]
            assert {size - 12 - 2 - 10 for size in sizes} <= {1000, 500}, sizes
            numbers = [int.from_bytes(d[2:4], "big") for d in copies]
            assert numbers == [(numbers[0] + i) & 0xFFFF for i in range(len(numbers))]
            assert len(reports) == 1  # frames 1/30 s apart: one report in 0.2 s
            assert installed.report_sent_at(sender.__dict__["_RTCRtpSender__lsr"]) is not None
            # Counted by aiortc's transport, as its own sends are.
            assert dtls.__dict__["_RTCDtlsTransport__tx_packets"] == len(relayed)
            # Not asked again: the probe ends by itself, over the relay too.
            now[0] += 3
            relayed.clear()
            await track.frames.put(EncodedFrame("h264", b"x", False, 0.0, 12000, payloads, 0))
            await asyncio.sleep(0.02)
            assert len(relayed) == 3 and installed.padding_bitrate == 0
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_nacks_are_answered_once_a_round_trip_and_within_the_repair_budget() -> None:
    """On a path that drops what it cannot carry the viewer asks for more than it can
    take: the same packet again before the first answer could arrive, and more packets
    than there is room for. Each packet is answered once a round trip at most, and
    answers stay within `repair_bitrate`."""
    now = [100.0]
    async with _connected_sender(None, lambda: now[0]) as (installed, _):
        answered: list[bytes] = []

        async def capture(packet: bytes) -> None:
            answered.append(packet)

        installed._sender.transport._send_rtp = capture  # type: ignore[method-assign, assignment]
        first = installed._sequence
        frame = EncodedFrame("h264", b"x", True, 0.0, 0, (b"p" * 1000,) * 20, 0)
        assert installed._deliver(frame) is True
        installed.round_trip = 0.2
        await installed.retransmit(first)
        await installed.retransmit(first)  # asked again at once: not answered again
        assert len(answered) == 1
        now[0] += 0.25  # a round trip later it may be
        await installed.retransmit(first)
        assert len(answered) == 2

        installed.repair_bitrate = 80_000  # 10 000 bytes a second, 5 000 saved up at most
        now[0] += 10
        for index in range(1, 20):
            await installed.retransmit((first + index) & 0xFFFF)
        assert len(answered) == 2 + 5  # what 5 000 bytes hold
        now[0] += 0.35  # 3 500 bytes more
        for index in range(1, 20):
            await installed.retransmit((first + index) & 0xFFFF)

        assert len(answered) == 2 + 5 + 3
        # However low the rate, one packet's worth can be saved up: never none at all.
        installed.repair_bitrate = 8_000
        now[0] += 60
        await installed.retransmit((first + 19) & 0xFFFF)
        assert len(answered) == 2 + 5 + 3 + 1
