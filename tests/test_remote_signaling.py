"""Remote access through a real broker (mosquitto, TLS and a password), the real
daemon, and a paired phone in Python (tests/remote_phone.py): a session opened only
through the broker plays and carries the data channel; every kind of bad message is
refused with a logged reason and changes nothing; the broker restarting is survived
without touching local viewers; and the broker only ever carries ciphertext."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import av
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from peercam.ice.candidate_filter import candidate_types
from peercam.remote.keys import from_b64url, public_bytes
from peercam.remote.sealing import DeviceChannel
from peercam.remote.signaling import MAX_PER_SECOND
from tests.conftest import StartDaemon
from tests.daemon_process import DaemonProcess
from tests.mqtt_broker import PASSWORD, USER, Broker
from tests.remote_phone import RemotePhone, pair, remote_config
from tests.whep_viewer import WhepViewer

CAMERA = """
[camera]
source = "test"
size = "320x240"
fps = 15
[talkback]
enabled = false
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.kill()


async def paired_camera(
    start_daemon: StartDaemon, broker: Broker, candidates: str = "all"
) -> tuple[DaemonProcess, ec.EllipticCurvePrivateKey, dict[str, Any]]:
    """A camera linked to `broker`, and a device key paired with it (and its pairing)."""
    daemon = start_daemon(CAMERA + remote_config(broker, candidates=candidates))
    await wait_for(lambda: linked(daemon), "never linked to the broker", daemon)
    key, pairing = await pair(daemon.access)
    return daemon, key, pairing


async def wait_for(condition: object, what: str, daemon: DaemonProcess, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}:\n{daemon.log()[-3000:]}"
        await asyncio.sleep(0.1)


def linked(daemon: DaemonProcess) -> bool:
    return daemon.metric("peercam_remote_linked") == 1.0


async def test_a_paired_phone_watches_and_uses_the_channel_through_the_broker(
    start_daemon: StartDaemon, broker: Broker
) -> None:
    daemon, key, pairing = await paired_camera(start_daemon, broker)
    # The page may open the broker's WebSocket (and nothing else off the camera).
    async with daemon.access.session() as http, http.get(daemon.base + "/") as response:
        policy = response.headers["Content-Security-Policy"]
    assert "connect-src 'self' ws://127.0.0.1:9;" in policy
    async with RemotePhone(broker, key, pairing) as phone:
        answer = await phone.connect()
        assert phone.pc is not None and phone.channel is not None
        await phone.channel.opened()
        assert (await phone.channel.next({"type": "state"}))["call"] == "idle"
        # The camera's side of the connection: its LAN address is not told outside.
        stats = await phone.channel.next({"type": "stats"})
        camera_end = stats["candidatePair"]["local"]
        assert camera_end["type"] == "host" and camera_end["address"] is None
        await asyncio.to_thread(daemon.access.urlopen, "/api/ring", "POST")
        await phone.channel.next({"type": "ring"})
        # Paired by the admin, it acts as the admin.
        assert (await phone.channel.command("decline"))["ok"]
        _, snapshot = await phone.channel.fetch("snapshot")
        assert snapshot[:2] == b"\xff\xd8"
        receivers = {t.kind: t for t in phone.pc.getTransceivers()}
        frame = await asyncio.wait_for(receivers["video"].receiver.track.recv(), 15)
        assert isinstance(frame, av.VideoFrame) and frame.width == 320
        assert f"remote:{pairing['device'][:12]}" in daemon.log()
        # Hanging up through the broker ends the session on the camera.
        await phone.send({"type": "hangup", "call": "call-1"})
        await wait_for(lambda: daemon.metric("peercam_viewers") == 0, "not hung up", daemon)
        # Unpaired from the page while watching: its session ends, and from then on
        # its messages are refused.
        await phone.connect("call-2")
        await wait_for(lambda: daemon.metric("peercam_viewers") == 1, "no session", daemon)
        async with daemon.access.session() as http:
            path = f"/api/remote/devices/{pairing['device']}"
            async with http.delete(daemon.base + path) as response:
                assert response.status == 204
        await wait_for(lambda: daemon.metric("peercam_viewers") == 0, "still open", daemon)
        await phone.send({"type": "ice", "call": "call-3"})
        await wait_for(
            lambda: daemon.metric("peercam_remote_refused_total", reason="unknown-device") == 1,
            "an unpaired device's message was not refused",
            daemon,
        )
    assert answer["session"]


async def test_public_candidates_only_for_remote_viewers(
    start_daemon: StartDaemon, broker: Broker
) -> None:
    """No STUN or TURN server here: with "public", the answer lists no candidate at
    all rather than the camera's LAN addresses."""
    daemon, key, pairing = await paired_camera(start_daemon, broker, "public")
    async with RemotePhone(broker, key, pairing) as phone:
        answer = await phone.connect()
    assert candidate_types(answer["sdp"]) == []
    assert "c=IN IP4 0.0.0.0" in answer["sdp"]
    # A local viewer still gets every candidate.
    async with WhepViewer(daemon.access) as local:
        assert local.answer is not None and "host" in candidate_types(local.answer.sdp)
    assert "no STUN or TURN server" in daemon.log()


async def test_bad_messages_are_refused_with_a_reason_and_change_nothing(
    start_daemon: StartDaemon, broker: Broker
) -> None:
    daemon, key, pairing = await paired_camera(start_daemon, broker)
    camera_key = phone_camera_key(pairing)
    async with RemotePhone(broker, key, pairing) as phone:
        await phone.send({"type": "ice", "call": "first"})
        assert (await phone.reply("first"))["type"] == "ice"
        # The same bytes again: a replay.
        await phone.publish(phone.sent[-1])
        # An unpaired device, with a key of its own.
        stranger = DeviceChannel(ec.generate_private_key(ec.SECP256R1()), camera_key)
        await phone.publish(stranger.seal(b'{"type": "ice", "call": "x"}'))
        # Meant for another camera, on this camera's topic.
        other_camera = ec.generate_private_key(ec.SECP256R1()).public_key()
        elsewhere = DeviceChannel(key, public_bytes(other_camera))
        await phone.publish(elsewhere.seal(b'{"type": "ice", "call": "x"}'))
        # Altered on the way: one bit of the ciphertext flipped.
        forged = bytearray(phone.sealer.seal(b'{"type": "ice", "call": "x"}'))
        forged[-1] ^= 1
        await phone.publish(bytes(forged))
        # Sealed properly, but ten minutes old.
        stale = DeviceChannel(key, camera_key, clock=lambda: time.time() - 600)
        await phone.publish(stale.seal(b'{"type": "ice", "call": "x"}'))
        # Not even a message.
        await phone.publish(b"hello broker")
        for reason in (
            "replayed",
            "unknown-device",
            "camera",
            "forged",
            "expired",
            "truncated",
        ):
            await wait_for(
                lambda r=reason: daemon.metric("peercam_remote_refused_total", reason=r) == 1.0,
                f"no refusal counted for {reason}",
                daemon,
            )
        # Opened but unusable: a reason comes back, sealed, and nothing opens.
        await phone.send({"type": "offer", "call": "bad", "sdp": "v=0 nonsense"})
        error = await phone.reply("bad")
        assert error["type"] == "error" and error["status"] == 400
        await phone.send({"type": "teleport", "call": "odd"})
        assert "unknown message type" in (await phone.reply("odd"))["reason"]
        await phone.send({"type": "hangup", "call": "never-opened"})
        assert (await phone.reply("never-opened"))["status"] == 404
        # Still served after all that.
        await phone.send({"type": "ice", "call": "after"})
        assert (await phone.reply("after"))["type"] == "ice"
        # A flood from anyone on the broker: past MAX_PER_SECOND, dropped before any key
        # work; a second later the camera answers again.
        for _ in range(3 * MAX_PER_SECOND):
            await phone.publish(b"flood")
        await wait_for(
            lambda: daemon.metric("peercam_remote_refused_total", reason="rate-limited") > 0,
            "a flood was not limited",
            daemon,
        )
        await asyncio.sleep(1.1)  # the limit's window: what is tested is what follows it
        await phone.send({"type": "ice", "call": "later"})
        assert (await phone.reply("later"))["type"] == "ice"
        # Nothing was answered to any refused message ("x" was each one's call),
        # and no session opened.
        answered = [reply["call"] for reply in phone.received]
        assert answered == ["first", "bad", "odd", "never-opened", "after", "later"], answered
    assert daemon.metric("peercam_viewers") == 0
    log = daemon.log()
    assert "refused a message: " in log and "Traceback" not in log


def phone_camera_key(pairing: dict[str, object]) -> bytes:
    return from_b64url(str(pairing["camera_key"]), "camera_key")


async def test_the_camera_relinks_after_the_broker_restarts_and_local_viewers_never_notice(
    start_daemon: StartDaemon, broker: Broker
) -> None:
    daemon, key, pairing = await paired_camera(start_daemon, broker)
    async with WhepViewer(daemon.access) as local:
        await local.video_frames(5)
        broker.kill()
        await wait_for(lambda: not linked(daemon), "did not notice the broker went", daemon)
        # The local viewer keeps getting frames while the broker is away.
        await local.video_frames(15)
        broker.start()
        await wait_for(lambda: linked(daemon), "did not relink", daemon, within=30)
        assert daemon.metric("peercam_remote_links_total") >= 2
        async with RemotePhone(broker, key, pairing) as phone:
            await phone.connect()
            assert phone.pc is not None
            video = next(t for t in phone.pc.getTransceivers() if t.kind == "video")
            await asyncio.wait_for(video.receiver.track.recv(), 15)
        await local.video_frames(5)


async def test_the_broker_sees_only_ciphertext(start_daemon: StartDaemon, broker: Broker) -> None:
    daemon, key, pairing = await paired_camera(start_daemon, broker)
    seen: list[bytes] = []
    context = ssl.create_default_context(cafile=str(broker.ca))
    async with aiomqtt.Client(
        broker.host, broker.port, username=USER, password=PASSWORD,
        tls_context=context, identifier=f"spy-{secrets.token_hex(3)}",
    ) as spy:  # fmt: skip
        await spy.subscribe("#", qos=1)

        async def listen() -> None:
            async for message in spy.messages:
                assert isinstance(message.payload, bytes)
                seen.append(message.payload)

        listener = asyncio.create_task(listen())
        async with RemotePhone(broker, key, pairing) as phone:
            answer = await phone.connect()
            assert phone.channel is not None
            await phone.channel.opened()
        await wait_for(lambda: len(seen) >= 4, "the spy saw too little", daemon)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert listener.cancelled(), listener  # it ended by our hand, not by a failure
    assert len(seen) >= 4  # ice and offer up, ice and answer down
    fingerprint = answer["sdp"].split("a=fingerprint:")[1].split()[1].encode()
    ufrag = answer["sdp"].split("a=ice-ufrag:")[1].split()[0].encode()
    for payload in seen:
        # Needles long enough not to turn up in random bytes by chance.
        for clear in (b"v=0\r\n", b"a=candidate:", b"fingerprint", b"ice-ufrag", b'"sdp"',
                      fingerprint, ufrag, b'"offer"', b'"answer"', b"typ host"):  # fmt: skip
            assert clear not in payload, f"{clear!r} in clear on the broker"


async def test_a_call_is_opened_once_and_a_hang_up_during_its_offer_leaves_nothing_open(
    start_daemon: StartDaemon, broker: Broker
) -> None:
    daemon, key, pairing = await paired_camera(start_daemon, broker)
    async with RemotePhone(broker, key, pairing) as phone:
        await phone.connect("first")
        assert phone.pc is not None
        offer = phone.pc.localDescription.sdp
        # The same call offered twice at once: one session, the other refused.
        await phone.send({"type": "offer", "call": "twice", "sdp": offer})
        await phone.send({"type": "offer", "call": "twice", "sdp": offer})
        replies = [await phone.reply("twice"), await phone.reply("twice")]
        assert sorted(r["type"] for r in replies) == ["answer", "error"], replies
        assert next(r for r in replies if r["type"] == "error")["status"] == 409
        await wait_for(lambda: daemon.metric("peercam_viewers") == 2, "not two sessions", daemon)
        # Offered and hung up at once: whichever the camera handles first, nothing of
        # that call stays open.
        await phone.send({"type": "offer", "call": "gone", "sdp": offer})
        await phone.send({"type": "hangup", "call": "gone"})
        await phone.send({"type": "hangup", "call": "twice"})
        await phone.send({"type": "hangup", "call": "first"})
        await wait_for(lambda: daemon.metric("peercam_viewers") == 0, "a call left open", daemon)
    assert "Traceback" not in daemon.log()
