"""Signaling sealed between a paired device and the camera (peercam.remote.sealing):
round trips both ways, the rendezvous sees only ciphertext, and every message it
could forge, replay or redirect is refused with a reason, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peercam.remote.devices import DeviceStore
from peercam.remote.keys import load_or_make_camera_key, public_bytes
from peercam.remote.refused import Refused
from peercam.remote.sealing import (
    HEADER,
    MAX_PAYLOAD,
    MAX_REMEMBERED,
    CameraChannel,
    DeviceChannel,
    ReplayMemory,
)
from tests.settable_clock import T0, Clock

SDP = b'{"type":"offer","sdp":"v=0\\r\\no=- 4611 2 IN IP4 192.168.1.23\\r\\n"}'


@dataclass
class Setup:
    clock: Clock
    store: DeviceStore
    camera: CameraChannel
    phone_key: ec.EllipticCurvePrivateKey
    phone: DeviceChannel


def new_device(
    camera: CameraChannel, clock: Clock, key: ec.EllipticCurvePrivateKey | None = None
) -> DeviceChannel:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return DeviceChannel(key, camera.public_key, clock=clock)


def pair(setup: Setup, name: str = "another phone") -> DeviceChannel:
    device = new_device(setup.camera, setup.clock)
    setup.store.add(name, device.public_key, setup.clock())
    return device


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    clock = Clock()
    store = DeviceStore(tmp_path)
    camera = CameraChannel(load_or_make_camera_key(tmp_path), store, clock=clock)
    phone_key = ec.generate_private_key(ec.SECP256R1())
    phone = new_device(camera, clock, phone_key)
    store.add("Anna's phone", phone.public_key, clock())
    return Setup(clock, store, camera, phone_key, phone)


def refused(code: str, channel: CameraChannel | DeviceChannel, data: bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        channel.open(data)
    assert caught.value.code == code, caught.value.reason
    return caught.value


def test_round_trip_both_ways(setup: Setup) -> None:
    sealed = setup.phone.seal(SDP)
    opened = setup.camera.open(sealed)
    assert opened.payload == SDP
    assert opened.device_id == setup.phone.device_id
    assert opened.sent_at == pytest.approx(T0)

    answer = setup.camera.seal(setup.phone.device_id, b"answer")
    assert setup.phone.open(answer).payload == b"answer"
    # Empty and largest payloads too.
    assert setup.camera.open(setup.phone.seal(b"")).payload == b""
    big = bytes(range(256)) * (MAX_PAYLOAD // 256)
    assert setup.camera.open(setup.phone.seal(big)).payload == big


def test_the_rendezvous_sees_only_ciphertext(setup: Setup) -> None:
    sealed = setup.phone.seal(SDP)
    for clear in (b"offer", b"192.168.1.23", b"sdp", b"v=0"):
        assert clear not in sealed
    # Two seals of one payload share nothing after the public header fields.
    again = setup.phone.seal(SDP)
    assert sealed[HEADER.size :] != again[HEADER.size :]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "truncated"),
        (b"hello", "truncated"),
        (b"\x00" * 200, "version"),
        (b"\x01\x07" + b"\x00" * 200, "garbage"),
        (b"\x01" * (HEADER.size + MAX_PAYLOAD + 17), "too-large"),
    ],
)
def test_garbage_is_refused_by_name(setup: Setup, data: bytes, code: str) -> None:
    refused(code, setup.camera, data)


def test_truncated_and_wrong_version(setup: Setup) -> None:
    sealed = setup.phone.seal(SDP)
    refused("truncated", setup.camera, sealed[: HEADER.size + 10])
    refused("forged", setup.camera, sealed[:-1])
    refused("version", setup.camera, b"\x02" + sealed[1:])


def test_unknown_device(setup: Setup) -> None:
    stranger = new_device(setup.camera, setup.clock)
    reason = refused("unknown-device", setup.camera, stranger.seal(SDP))
    assert stranger.device_id in reason.reason
    with pytest.raises(Refused) as caught:
        setup.camera.seal(stranger.device_id, b"x")
    assert caught.value.code == "unknown-device"


def test_a_replayed_message_is_refused(setup: Setup) -> None:
    sealed = setup.phone.seal(SDP)
    setup.camera.open(sealed)
    setup.clock.now += 30
    refused("replayed", setup.camera, sealed)
    answer = setup.camera.seal(setup.phone.device_id, b"answer")
    setup.phone.open(answer)
    refused("replayed", setup.phone, answer)


def test_an_old_or_future_message_is_refused(setup: Setup) -> None:
    sealed = setup.phone.seal(SDP)
    setup.clock.now += 121
    refused("expired", setup.camera, sealed)
    # Replayed long after it was first accepted: still refused, by its age.
    setup.clock.now = T0
    fresh = setup.phone.seal(SDP)
    setup.camera.open(fresh)
    setup.clock.now += 3600
    refused("expired", setup.camera, fresh)
    # A phone whose clock runs ahead.
    setup.clock.now = T0 + 600
    ahead = setup.phone.seal(SDP)
    setup.clock.now = T0
    refused("expired", setup.camera, ahead)


def test_an_altered_message_is_refused(setup: Setup) -> None:
    sealed = bytearray(setup.phone.seal(SDP))
    # The time field (authenticated as associated data), then the ciphertext.
    for position in (40, HEADER.size + 3, len(sealed) - 1):
        altered = bytearray(sealed)
        altered[position] ^= 1
        refused("forged", setup.camera, bytes(altered))
    # Another ephemeral key, valid on the curve but not the one sealed with.
    other = public_bytes(ec.generate_private_key(ec.SECP256R1()).public_key())
    refused("forged", setup.camera, bytes(sealed[:42]) + other + bytes(sealed[HEADER.size :]))
    # Not a point at all.
    refused(
        "bad-key", setup.camera, bytes(sealed[:42]) + b"\x04" + b"\xff" * 64 + bytes(sealed[107:])
    )
    # The original still opens: none of that was remembered as seen.
    assert setup.camera.open(bytes(sealed)).payload == SDP


def test_a_device_cannot_speak_as_another(setup: Setup) -> None:
    other = pair(setup)
    sealed = bytearray(setup.phone.seal(SDP))
    sealed[18:34] = bytes.fromhex(other.device_id)
    refused("forged", setup.camera, bytes(sealed))


def test_a_message_from_another_cameras_topic_is_refused(setup: Setup, tmp_path: Path) -> None:
    # The same phone paired with two cameras: what it sent camera B, a broker
    # redirects to camera A.
    other_dir = tmp_path / "b"
    other_store = DeviceStore(other_dir)
    camera_b = CameraChannel(load_or_make_camera_key(other_dir), other_store, clock=setup.clock)
    phone_for_b = DeviceChannel(setup.phone_key, camera_b.public_key, clock=setup.clock)
    other_store.add("Anna's phone", phone_for_b.public_key, T0)
    for_b = phone_for_b.seal(SDP)
    assert camera_b.open(for_b).payload == SDP
    refused("camera", setup.camera, for_b)
    # Camera B's answer, handed to the phone's channel with camera A.
    refused("camera", setup.phone, camera_b.seal(phone_for_b.device_id, b"answer"))


def test_a_message_meant_for_another_device_is_refused(setup: Setup) -> None:
    other = pair(setup)
    for_other = setup.camera.seal(other.device_id, b"answer for the other phone")
    refused("recipient", setup.phone, for_other)
    assert other.open(for_other).payload == b"answer for the other phone"


def test_a_reflected_message_is_refused(setup: Setup) -> None:
    # ECDH between the two long-term keys is symmetric; the direction in the header
    # (and in the key derivation) keeps a message from being bounced back.
    refused("direction", setup.camera, setup.camera.seal(setup.phone.device_id, b"x"))
    refused("direction", setup.phone, setup.phone.seal(b"x"))
    flipped = bytearray(setup.phone.seal(b"x"))
    flipped[1] = 2
    refused("forged", setup.phone, bytes(flipped))


def test_unpairing_ends_a_devices_ability_to_send(setup: Setup, tmp_path: Path) -> None:
    sent_before = setup.phone.seal(SDP)
    assert setup.camera.open(setup.phone.seal(SDP)).payload == SDP
    assert setup.store.remove(setup.phone.device_id)
    refused("unknown-device", setup.camera, setup.phone.seal(SDP))
    refused("unknown-device", setup.camera, sent_before)
    with pytest.raises(Refused):
        setup.camera.seal(setup.phone.device_id, b"answer")
    # And after a restart of the camera too.
    camera = CameraChannel(load_or_make_camera_key(tmp_path), DeviceStore(tmp_path))
    refused("unknown-device", camera, setup.phone.seal(SDP))


def test_the_replay_memory_holds_only_one_window() -> None:
    memory = ReplayMemory(window=120)
    for n in range(1000):
        memory.check_and_remember(b"%d" % n, T0 + n * 0.1, T0 + n * 0.1)
    assert len(memory) == 1000
    memory.check_and_remember(b"later", T0 + 500, T0 + 500)
    assert len(memory) == 1
    # Full of messages all still inside the window: refused, not grown without bound.
    for n in range(MAX_REMEMBERED - 1):
        memory.check_and_remember(b"x%d" % n, T0 + 500, T0 + 500)
    with pytest.raises(Refused) as caught:
        memory.check_and_remember(b"one more", T0 + 500, T0 + 500)
    assert caught.value.code == "busy"
    memory.check_and_remember(b"one more", T0 + 700, T0 + 700)
    assert len(memory) == 1


def test_the_camera_key_is_kept_across_restarts(setup: Setup, tmp_path: Path) -> None:
    sealed = setup.phone.seal(SDP)
    restarted = CameraChannel(
        load_or_make_camera_key(tmp_path), DeviceStore(tmp_path), clock=setup.clock
    )
    assert restarted.camera_id == setup.camera.camera_id
    assert restarted.open(sealed).payload == SDP
    assert (tmp_path / "remote-camera-key.pem").stat().st_mode & 0o777 == 0o600


FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_garbage_only_ever_refused(setup: Setup, data: bytes) -> None:
    with pytest.raises(Refused):
        setup.camera.open(data)
    with pytest.raises(Refused):
        setup.phone.open(data)


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=10_000),
    flip=st.integers(min_value=1, max_value=255),
    cut=st.integers(min_value=0, max_value=200),
    tail=st.binary(max_size=40),
)
def test_fuzz_altered_messages_only_ever_refused(
    setup: Setup, position: int, flip: int, cut: int, tail: bytes
) -> None:
    """Every kind of damage a broker could do to a real message: a flipped byte
    anywhere, a cut end, bytes added."""
    sealed = setup.phone.seal(SDP)
    altered = bytearray(sealed)
    altered[position % len(altered)] ^= flip
    for data in (bytes(altered), sealed[: len(sealed) - 1 - cut], sealed + tail if tail else b""):
        with pytest.raises(Refused):
            setup.camera.open(data)
    answer = setup.camera.seal(setup.phone.device_id, SDP)
    damaged = bytearray(answer)
    damaged[position % len(damaged)] ^= flip
    with pytest.raises(Refused):
        setup.phone.open(bytes(damaged))


@FUZZ
@given(body=st.binary(min_size=16, max_size=300), millis=st.integers(0, 2**64 - 1))
def test_fuzz_well_formed_headers_with_garbage_only_ever_refused(
    setup: Setup, body: bytes, millis: int
) -> None:
    """Garbage behind a header that passes every check before decryption: the
    right camera, a paired device, a current time, a real ephemeral key."""
    ephemeral = public_bytes(ec.generate_private_key(ec.SECP256R1()).public_key())
    for when in (millis, int(T0 * 1000)):
        header = HEADER.pack(
            1,
            1,
            bytes.fromhex(setup.camera.camera_id),
            bytes.fromhex(setup.phone.device_id),
            when,
            ephemeral,
        )
        with pytest.raises(Refused):
            setup.camera.open(header + body)
