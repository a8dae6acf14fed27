"""The data channel on a viewer's peer connection (viewer_channel/server.py), through
the real daemon and aiortc as the viewer: doorbell events and commands with their
role checks, the clip list, clips in chunks and resumed after a lost connection,
pictures, and bad requests refused while the channel keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.access import bearer
from tests.alsa_fixture import fake_sound_card
from tests.conftest import StartDaemon
from tests.test_auth import token
from tests.test_clips_page import RECORDING, record_now, wait_for_clip
from tests.whep_viewer import WhepViewer

CONFIG = (
    RECORDING
    + """
[talkback]
device = "peercam_speaker"
"""
)


async def test_channel_carries_doorbell_clips_and_pictures(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    card = fake_sound_card(tmp_path / "card", seconds=2)
    daemon = start_daemon(CONFIG, env=card.env)
    clip_id = await asyncio.to_thread(record_now, daemon)
    viewer_token = await asyncio.to_thread(token, daemon, "family", "viewer")
    family = daemon.access.with_headers(bearer(viewer_token))
    async with (
        WhepViewer(daemon.access, channel_label="peercam") as admin_page,
        WhepViewer(family, channel_label="peercam") as family_page,
    ):
        assert admin_page.channel is not None and family_page.channel is not None
        admin, viewer = admin_page.channel, family_page.channel
        await admin.opened()
        await viewer.opened()
        # The call state first, as the WebSocket gives it.
        assert (await admin.next({"type": "state"}))["call"] == "idle"
        await viewer.next({"type": "state"})
        # The camera's side of the connection, with its own address for a viewer at home.
        stats = await viewer.next({"type": "stats"})
        assert stats["candidatePair"]["local"]["address"] is not None

        # A ring reaches both; the admin answers through its channel, the viewer may not.
        await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST")
        await admin.next({"type": "ring"})
        await viewer.next({"type": "ring"})
        refused = await viewer.command("answer")
        assert not refused["ok"] and "admin role" in refused["reason"]
        answered = await admin.command("answer")
        assert answered["ok"], answered
        assert (await viewer.next({"type": "answered"}))["by"] == "admin"
        assert (await admin.command("hangup"))["ok"]
        await viewer.next({"type": "ended"})
        no_relay = await admin.command("open-door")
        assert not no_relay["ok"] and "relay" in no_relay["reason"]

        # The clip list, then the clip itself, byte for byte as HTTP serves it.
        await asyncio.to_thread(wait_for_clip, daemon, clip_id)
        _, listing = await viewer.request("clips")
        assert listing["ok"] and clip_id in [clip["id"] for clip in listing["clips"]]
        over_http = await asyncio.to_thread(daemon.access.urlopen, f"/api/clips/{clip_id}")
        reply, data = await viewer.fetch("clip", clip=clip_id)
        assert reply["size"] == len(over_http) and reply["content_type"] == "video/mp4"
        assert data == over_http
        half = len(over_http) // 2
        _, tail = await viewer.fetch("clip", clip=clip_id, offset=half)
        assert tail == over_http[half:]
        picture_reply, picture = await viewer.fetch("picture", clip=clip_id)
        assert picture_reply["content_type"] == "image/jpeg" and picture[:2] == b"\xff\xd8"
        _, snapshot = await viewer.fetch("snapshot")
        assert snapshot[:2] == b"\xff\xd8" and snapshot[-2:] == b"\xff\xd9"

        # Bad requests: each refused with a reason, and the channel keeps serving.
        viewer.channel.send(b"\x00\x01binary")
        assert "JSON text" in (await viewer.next({"type": "result"}))["reason"]
        viewer.send("{not json")
        assert "JSON object" in (await viewer.next({"type": "result"}))["reason"]
        _, unknown = await viewer.request("teleport")
        assert unknown["status"] == 400 and "unknown op" in unknown["reason"]
        _, escape = await viewer.request("clip", clip="../../etc/passwd")
        assert escape["status"] == 404
        _, past = await viewer.request("clip", clip=clip_id, offset=len(over_http) + 1)
        assert past["status"] == 416
        _, negative = await viewer.request("clip", clip=clip_id, offset=-5)
        assert negative["status"] == 400
        viewer.send("x" * 5000)  # over MAX_REQUEST: refused before it is kept
        assert "JSON text" in (await viewer.next({"type": "result"}))["reason"]
        # A command may carry an id, and its result names it.
        viewer.send({"cmd": "open-door", "id": 77})
        tagged = await viewer.next({"re": 77})
        assert tagged["type"] == "result" and not tagged["ok"]
        # One channel per session: a second is closed at once.
        extra = family_page.pc.createDataChannel("peercam")
        closed = asyncio.Event()
        extra.on("close", closed.set)
        await asyncio.wait_for(closed.wait(), 10)
        _, again = await viewer.request("clips")
        assert again["ok"]
    assert "Traceback" not in daemon.log()


async def test_a_clip_cut_off_by_a_lost_connection_resumes_where_it_stopped(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(RECORDING + "[talkback]\nenabled = false\n")
    clip_id = await asyncio.to_thread(record_now, daemon)
    await asyncio.to_thread(wait_for_clip, daemon, clip_id)
    whole = await asyncio.to_thread(daemon.access.urlopen, f"/api/clips/{clip_id}")
    async with WhepViewer(daemon.access, channel_label="peercam") as first:
        assert first.channel is not None
        client = first.channel
        await client.opened()
        request_id, reply = await client.request("clip", clip=clip_id)
        assert reply["size"] == len(whole)
        # The first chunk is in; then the connection is gone mid-transfer. The page
        # resumes from what it kept (here at most half, however much arrived).
        got = (await client.received(request_id, 1))[: len(whole) // 2]
        await first.pc.close()
    assert 0 < len(got) < len(whole)
    async with WhepViewer(daemon.access, channel_label="peercam") as second:
        assert second.channel is not None
        resumed = second.channel
        await resumed.opened()
        reply, rest = await resumed.fetch("clip", clip=clip_id, offset=len(got))
        assert reply["offset"] == len(got)
    assert got + rest == whole
    assert "Traceback" not in daemon.log()
