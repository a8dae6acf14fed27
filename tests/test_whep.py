"""WHEP against the real daemon, with aiortc as a non-browser client."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from peercam.capture import timecode
from tests.access import Access
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.test_fuzz import OFFER
from tests.whep_viewer import WhepViewer


async def test_whep_client_gets_201_location_and_live_frames(daemon: DaemonProcess) -> None:
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None
        assert viewer.answer.status == 201
        assert viewer.answer.location.startswith("/whep/sessions/")
        assert viewer.answer.content_type == "application/sdp"
        assert "a=fingerprint" in viewer.answer.sdp
        frames = await viewer.video_frames(30)
        assert (frames[-1].width, frames[-1].height) == (640, 480)
        # The picture is the test pattern's, made moments ago: its burned-in capture
        # time is a few hundred ms old at most.
        luma = frames[-1].to_ndarray(format="gray").astype(np.uint8)
        stamped = timecode.read(luma)
        assert stamped is not None
        assert 0 <= time.time() * 1000 - stamped < 1000
        audio = await viewer.audio_frames(10)
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in audio[3:]])
        assert np.abs(samples).max() > 1000  # the tone, not silence
        assert await viewer.hang_up() == 200
    assert daemon.metric("peercam_viewers") == 0


async def test_delete_ends_the_session_and_stops_idle_encoders(daemon: DaemonProcess) -> None:
    # Twice: the second idle stop once failed silently, leaving encoders running.
    for _ in range(3):
        async with WhepViewer(daemon.access) as viewer:
            await viewer.video_frames(5)
            assert daemon.metric("peercam_encoder_running", codec="h264") == 1
            assert await viewer.hang_up() == 200
            assert await viewer.hang_up() == 404  # already gone
        deadline = time.monotonic() + 5
        while daemon.metric("peercam_encoder_running", codec="h264") != 0:
            assert time.monotonic() < deadline, "encoder still running with no viewers"
            await asyncio.sleep(0.1)
        assert daemon.metric("peercam_viewers") == 0


async def test_vp8_when_the_offer_has_no_h264(daemon: DaemonProcess) -> None:
    async with WhepViewer(daemon.access, video_codec="video/VP8") as viewer:
        assert viewer.answer is not None
        assert "VP8/90000" in viewer.answer.sdp and "H264" not in viewer.answer.sdp
        await viewer.video_frames(10)
        assert daemon.metric("peercam_encoder_running", codec="vp8") == 1
        assert daemon.metric("peercam_encoder_running", codec="h264") == 0


async def patch_sdpfrag(access: Access, url: str, body: str) -> int:
    headers = {"Content-Type": "application/trickle-ice-sdpfrag"}
    async with access.session() as http, http.patch(url, data=body, headers=headers) as r:
        return int(r.status)


async def test_trickled_candidates_are_accepted(daemon: DaemonProcess) -> None:
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None
        ufrag = next(
            line.split(":", 1)[1]
            for line in viewer.pc.localDescription.sdp.splitlines()
            if line.startswith("a=ice-ufrag:")
        )
        frag = (
            f"a=ice-ufrag:{ufrag}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
            "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
            "a=candidate:2 1 udp 2122260223 0e1c5a9c-1111-4d2e-9f00-3b8b0f0b0b0b.local "
            "50001 typ host\r\n"
        )
        url = daemon.base + viewer.answer.location
        started = time.monotonic()
        assert await patch_sdpfrag(daemon.access, url, frag) == 204
        # An mDNS name is resolved in the background; the response never waits on it.
        assert time.monotonic() - started < 0.5
        assert await patch_sdpfrag(daemon.access, url, frag.replace(ufrag, "newufrag")) == 422
        await viewer.video_frames(5)


async def test_cors_preflight(daemon: DaemonProcess) -> None:
    async with daemon.access.session() as http, http.options(daemon.base + "/whep") as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Accept-Post"] == "application/sdp"


async def test_ice_servers_are_advertised_in_link_headers(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(
        """
[camera]
size = "320x240"
[[webrtc.ice_servers]]
urls = ["stun:127.0.0.1:3478"]
[[webrtc.ice_servers]]
urls = ["turn:127.0.0.1:3478?transport=udp"]
username = "user"
credential = "pa\\"ss"
"""
    )
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None
        links = ", ".join(viewer.answer.links)
        assert '<stun:127.0.0.1:3478>; rel="ice-server"' in links
        assert (
            '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="user"; '
            'credential="pa\\"ss"; credential-type="password"' in links
        )


VIDEO_ONLY_AUDIO = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=recvonly
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=rtpmap:111 opus/48000/2
""".replace("{FINGERPRINT}", ":".join(["AB"] * 32))


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        ("text/plain", "v=0\r\n", 415, "Content-Type must be application/sdp"),
        ("application/sdp", "hello", 400, "not an SDP offer"),
        ("application/sdp", "v=0\r\nm=video\r\n", 400, "malformed SDP"),
        ("application/sdp", "v=0\r\n" + "a=x\r\n" * 40_000, 413, "body over"),
        ("application/sdp", VIDEO_ONLY_AUDIO, 400, "no video media section"),
        (
            "application/sdp",
            VIDEO_ONLY_AUDIO.replace(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 111"
            ).replace("opus/48000/2", "AV1/90000"),
            400,
            "no common video codec",
        ),
        ("application/sdp", "v=0\r\n\x00\xff\x01", 400, ""),
        # Found by tests/test_fuzz.py: aiortc failed deep in its answer on these.
        ("application/sdp", OFFER.replace("a=mid:0\r\n", ""), 400, "needs an a=mid"),
        ("application/sdp", OFFER.replace("a=mid:1", "a=mid:0"), 400, "share an a=mid"),
        ("application/sdp", OFFER.replace("BUNDLE 0 1", "BUNDLE 0 7"), 400, "unknown mids 7"),
    ],
)
async def test_bad_offers_get_a_4xx_with_a_reason(
    daemon: DaemonProcess, content_type: str, body: str, status: int, reason: str
) -> None:
    async with (
        daemon.access.session() as http,
        http.post(
            daemon.base + "/whep", data=body.encode(), headers={"Content-Type": content_type}
        ) as response,
    ):
        text = await response.text()
        assert response.status == status, text
        assert reason in text
        assert text.count("\n") == 1 and "Traceback" not in text


async def test_bad_input_never_disturbs_a_streaming_viewer(daemon: DaemonProcess) -> None:
    bad_requests = [
        ("POST", "/whep", "text/plain", b"x"),
        ("POST", "/whep", "application/sdp", b"v=0\r\nm=video 0\r\n"),
        ("POST", "/whep", "application/sdp", b"v=0\r\n" + b"a=" + b"x" * 200_000),
        ("POST", "/whep", "application/sdp", VIDEO_ONLY_AUDIO.encode()),
        ("PATCH", "/whep/sessions/nope", "application/trickle-ice-sdpfrag", b"a=candidate:x"),
        ("DELETE", "/whep/sessions/nope", "text/plain", b""),
        ("GET", "/whep/sessions/../../etc/passwd", "text/plain", b""),
        ("PUT", "/whep", "application/sdp", b"v=0"),
    ]
    async with WhepViewer(daemon.access) as viewer:
        await viewer.video_frames(10)
        async with daemon.access.session() as http:
            statuses = []
            for method, path, content_type, body in bad_requests * 5:
                async with http.request(
                    method, daemon.base + path, data=body, headers={"Content-Type": content_type}
                ) as response:
                    statuses.append(response.status)
                    assert "Traceback" not in await response.text()
        assert all(400 <= s < 500 for s in statuses), statuses
        # The connected viewer kept receiving throughout and still does, at full rate.
        started = time.monotonic()
        await viewer.video_frames(30)
        assert time.monotonic() - started < 3
    assert daemon.process.poll() is None


async def test_bad_trickle_fragments(daemon: DaemonProcess) -> None:
    async with WhepViewer(daemon.access) as viewer, daemon.access.session() as http:
        assert viewer.answer is not None
        url = daemon.base + viewer.answer.location
        cases = [
            ("text/plain", "a=candidate:1 1 udp 1 127.0.0.1 5 typ host", 415),
            ("application/trickle-ice-sdpfrag", "a=candidate:garbage", 400),
        ]
        for content_type, body, status in cases:
            async with http.patch(url, data=body, headers={"Content-Type": content_type}) as r:
                assert r.status == status, await r.text()
        await viewer.video_frames(5)


async def test_per_client_limits_are_429_with_a_reason(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(
        '[camera]\nsize = "320x240"\n[viewers]\nmax_per_client = 2\n'
        "sessions_per_minute_per_client = 3\n"
    )
    async with WhepViewer(daemon.access) as first, WhepViewer(daemon.access):
        with pytest.raises(AssertionError, match="429: at most 2 viewers per client"):
            async with WhepViewer(daemon.access):
                pass
        await first.video_frames(5)  # the admitted viewers are unaffected
        assert await first.hang_up() == 200
        # A slot is free again, but this client has started 3 sessions this minute.
        async with WhepViewer(daemon.access) as third:
            assert await third.hang_up() == 200
        with pytest.raises(AssertionError, match="429: at most 3 new sessions a minute"):
            async with WhepViewer(daemon.access):
                pass


async def test_every_response_carries_the_security_headers(daemon: DaemonProcess) -> None:
    async with daemon.access.session() as http:
        for method, path in [
            ("GET", "/"), ("GET", "/ui/viewer.js"), ("GET", "/healthz"), ("GET", "/metrics"),
            ("GET", "/api/state"), ("GET", "/nope"), ("OPTIONS", "/whep"), ("POST", "/whep"),
        ]:  # fmt: skip
            async with http.request(method, daemon.base + path) as response:
                csp = response.headers.get("Content-Security-Policy", "")
                assert "frame-ancestors 'none'" in csp, (method, path, response.status)
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                assert response.headers["Referrer-Policy"] == "same-origin"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(daemon.base + "/") as response:
            page = await response.text()
    # No inline script for the policy to forbid: every script is a file of ours.
    assert "<script>" not in page and 'src="/ui/viewer.js"' in page


async def test_h264_and_vp8_viewers_at_once_share_raw_frames_safely(
    daemon: DaemonProcess,
) -> None:
    # Found by tests/test_fuzz.py: both encoders stamped their pts on one shared
    # frame, and libvpx refused every frame while an H.264 viewer watched too.
    async with (
        WhepViewer(daemon.access, video_codec="video/H264") as h264,
        WhepViewer(daemon.access, video_codec="video/VP8") as vp8,
    ):
        assert len(await h264.video_frames(30)) == 30
        assert len(await vp8.video_frames(30)) == 30
    assert "encoder failed" not in daemon.log()
