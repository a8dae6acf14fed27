"""GStreamer's webrtcbin as a WHEP client: a WebRTC stack that is neither libwebrtc nor
aiortc, with an RSA DTLS certificate. It must play whichever DTLS role peercam takes:
the client for an `a=setup:actpass` offer (aiortc's default, where only ECDHE-ECDSA
suites used to be offered and the handshake failed with "no shared cipher"), the
server for `a=setup:active`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.interop.webrtcbin import WebrtcbinViewer, missing_elements

pytestmark = pytest.mark.timeout(120)

RATE = 48000


@pytest.fixture(scope="module", autouse=True)
def _gstreamer() -> None:
    missing = missing_elements()
    assert not missing, f"make test installs GStreamer's WebRTC stack; missing: {missing}"


def video_format(answer: str) -> tuple[str, str]:
    """The answer's video codec (its first payload type): encoding name and fmtp."""
    section = answer.split("m=video ", 1)[1].split("\nm=", 1)[0]
    pt = section.split()[2]
    rtpmap = re.search(rf"a=rtpmap:{pt} ([\w-]+)/", section)
    fmtp = re.search(rf"a=fmtp:{pt} (.*)", section)
    assert rtpmap, answer
    return rtpmap.group(1), fmtp.group(1).strip() if fmtp else ""


async def post_offer(daemon: DaemonProcess, offer: str) -> tuple[str, str]:
    async with (
        daemon.access.session() as http,
        http.post(
            daemon.base + "/whep", data=offer, headers={"Content-Type": "application/sdp"}
        ) as response,
    ):
        body = await response.text()
        assert response.status == 201, body
        return body, response.headers["Location"]


async def delete(daemon: DaemonProcess, location: str) -> int:
    async with daemon.access.session() as http, http.delete(daemon.base + location) as response:
        return response.status


@pytest.mark.parametrize("setup", ["actpass", "active"])
@pytest.mark.parametrize(
    ("offer_kind", "codec", "size"), [("safari", "H264", "640x480"), ("vp8", "VP8", "640x480")]
)
async def test_webrtcbin_plays_in_either_dtls_role(
    start_daemon: StartDaemon, tmp_path: Path, offer_kind: str, codec: str, size: str, setup: str
) -> None:
    daemon = start_daemon()
    with WebrtcbinViewer(offer_kind, tmp_path / "webrtcbin.log") as viewer:
        offer = await viewer.offer()
        assert "a=setup:actpass" in offer
        answer, location = await post_offer(
            daemon, offer.replace("a=setup:actpass", f"a=setup:{setup}")
        )
        assert f"a=setup:{'active' if setup == 'actpass' else 'passive'}" in answer, answer
        name, fmtp = video_format(answer)
        assert name == codec, answer
        if codec == "H264":
            # From High and baseline in both modes: the stream's own format.
            assert "profile-level-id=42e01f" in fmtp and "packetization-mode=1" in fmtp, fmtp
        viewer.answer(answer)

        report = await viewer.wait_for(
            lambda r: r["video_frames"] >= 30 and r["audio_samples"] >= RATE // 2
        )
        assert report["connection_state"] == "connected", report
        # webrtcbin is the DTLS client exactly when peercam answered passive.
        assert report["dtls_client"] is (setup == "active"), report
        assert report["video_encoding"] == codec, report
        assert report["video_frames"] >= 30, (report, daemon.log())
        assert report["video_size"] == [int(n) for n in size.split("x")], report
        # A new viewer starts at a keyframe: its very first packet begins one.
        assert report["first_video_packet_keyframe"] is True, report
        assert report["audio_encoding"] == "OPUS", report
        assert report["audio_samples"] >= RATE // 2, report
        assert daemon.metric("peercam_viewers") == 1

        assert await delete(daemon, location) == 200
        assert daemon.metric("peercam_viewers") == 0
        assert await delete(daemon, location) == 404
    assert "DTLS handshake failed" not in daemon.log()
