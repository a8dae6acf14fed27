"""The places peercam reaches into aiortc's sender, checked against the installed
aiortc: shared payloads instead of a per-viewer encoder, PLI/FIR forwarded, and each
track in a media stream of its own."""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from peercam.fanout.hub import StreamHub
from peercam.media import EncodedFrame
from peercam.rtc import dtls
from peercam.rtc.shared_track import (
    PrepackedPayloads,
    SharedFrameTrack,
    attach_to_sender,
    release_audio_promptly,
)
from peercam.rtc.sync_groups import own_stream
from tests.conftest import StartDaemon
from tests.whep_viewer import WhepViewer


async def test_sender_uses_the_shared_payloads_and_forwards_pli_and_fir() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    hub = StreamHub("h264", True, lambda reason: None)
    track = SharedFrameTrack("video", hub.subscribe(4))
    sender = pc.addTransceiver(track, direction="sendonly").sender
    requests: list[str] = []
    attach_to_sender(sender, lambda: requests.append("keyframe"))
    packer = getattr(sender, "_RTCRtpSender__encoder")  # noqa: B009
    assert isinstance(packer, PrepackedPayloads)
    frame = EncodedFrame("h264", b"x", True, 0.0, 1234, (b"a", b"b"), 0)
    assert packer.pack(frame) == ([b"a", b"b"], 1234)
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["keyframe", "keyframe"]
    await pc.close()


async def test_talkback_receivers_release_audio_without_prefetch() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("audio", direction="sendrecv").receiver
    release_audio_promptly(receiver)
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer")  # noqa: B009
    assert buffer._prefetch == 1 and buffer.capacity == 16
    await pc.close()


async def test_a_pli_from_a_real_viewer_reaches_the_shared_encoder(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(5)
        before = daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="rtcp")
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        media_ssrc = next(iter(getattr(receiver, "_RTCRtpReceiver__remote_streams")))  # noqa: B009
        for _ in range(3):
            await receiver._send_rtcp_pli(media_ssrc)
            await asyncio.sleep(0.3)
        await viewer.video_frames(5)
        after = daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="rtcp")
        assert after - before >= 3


async def test_a_pli_storm_yields_at_most_one_forced_keyframe_per_gap(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon()  # keyframe_min_gap_ms = 500 by default
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(5)
        before = daemon.metric("peercam_keyframes_total", codec="h264", cause="requested")
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        media_ssrc = next(iter(getattr(receiver, "_RTCRtpReceiver__remote_streams")))  # noqa: B009
        started = asyncio.get_running_loop().time()
        for _ in range(60):  # a PLI every 50 ms for 3 s
            await receiver._send_rtcp_pli(media_ssrc)
            await asyncio.sleep(0.05)
        elapsed = asyncio.get_running_loop().time() - started
        await viewer.video_frames(10)  # the stream is still flowing
        forced = daemon.metric("peercam_keyframes_total", codec="h264", cause="requested") - before
        requests = daemon.metric("peercam_keyframe_requests_total", codec="h264", reason="rtcp")
        assert requests >= 50
        assert 3 <= forced <= elapsed / 0.5 + 2, (forced, elapsed)


async def test_audio_and_video_senders_are_written_as_separate_media_streams() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in ("audio", "video"):
        own_stream(pc.addTransceiver(kind, direction="sendonly").sender, kind)
    await pc.setLocalDescription(await pc.createOffer())
    streams = {
        line.split(":", 1)[1].split()[0]
        for line in pc.localDescription.sdp.splitlines()
        if line.startswith("a=msid:")
    }
    assert streams == {"peercam-audio", "peercam-video"}
    await pc.close()


async def test_peer_connections_get_the_interop_certificate() -> None:
    pc = dtls.peer_connection(RTCConfiguration(iceServers=[]))
    certificates = getattr(pc, "_RTCPeerConnection__certificates")  # noqa: B009
    assert [type(c) for c in certificates] == [dtls.InteropCertificate]
    # The offer's fingerprint is the certificate that will be used.
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    fingerprint = certificates[0].getFingerprints()[0].value
    assert fingerprint in pc.localDescription.sdp
    await pc.close()
