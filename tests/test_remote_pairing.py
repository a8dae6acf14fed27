"""Pairing a phone with the camera (peercam.remote.pairing) and the store of paired
devices (peercam.remote.devices): both ways of pairing, every forged or stale
request refused with a reason, and the store private, atomic and kept."""

from __future__ import annotations

import base64
import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peercam.remote import devices as devices_module
from peercam.remote.devices import FILE_NAME, DeviceStore
from peercam.remote.keys import b64url, key_id, load_or_make_camera_key, public_bytes
from peercam.remote.pairing import (
    DEFAULT_LIFETIME,
    MAX_FAILURES,
    Pairing,
    PairingOffer,
    check_response,
    make_request,
    normalize_code,
)
from peercam.remote.refused import Refused
from peercam.remote.sealing import CameraChannel, DeviceChannel
from peercam.service.private_file import write_private
from tests.settable_clock import T0, Clock


@dataclass
class Camera:
    directory: Path
    clock: Clock
    key: ec.EllipticCurvePrivateKey
    store: DeviceStore
    pairing: Pairing

    @property
    def id(self) -> str:
        return key_id(public_bytes(self.key.public_key())).hex()


def start_camera(directory: Path, clock: Clock) -> Camera:
    key = load_or_make_camera_key(directory)
    store = DeviceStore(directory)
    return Camera(directory, clock, key, store, Pairing(key, store, clock=clock))


@pytest.fixture
def camera(tmp_path: Path) -> Camera:
    return start_camera(tmp_path, Clock())


def phone_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def scan(offer: PairingOffer) -> tuple[str, bytes]:
    """What the phone reads from the QR code's fragment."""
    version, camera_id, secret = offer.qr_fragment().split(".")
    assert version == "1"
    return camera_id, base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


def refused(code: str, camera: Camera, request: object) -> Refused:
    with pytest.raises(Refused) as caught:
        camera.pairing.accept(request)
    assert caught.value.code == code, caught.value.reason
    return caught.value


def test_pairing_by_qr_code(camera: Camera) -> None:
    offer = camera.pairing.offer()
    camera_id, secret = scan(offer)
    assert camera_id == camera.id
    key = phone_key()
    request, pair_key = make_request(secret, camera_id, key, "Anna's phone", camera.clock())
    device, response = camera.pairing.accept(request)
    assert device.name == "Anna's phone"
    assert device.id == key_id(public_bytes(key.public_key())).hex()
    assert device.paired_at == T0 and device.last_seen is None
    camera_public = check_response(response, pair_key, request)
    assert camera_public == public_bytes(camera.key.public_key())
    # Paired: the two can now talk through the rendezvous.
    channel = CameraChannel(camera.key, camera.store, clock=camera.clock)
    phone = DeviceChannel(key, camera_public, clock=camera.clock)
    assert channel.open(phone.seal(b"offer")).payload == b"offer"


def test_pairing_by_typed_code(camera: Camera) -> None:
    offer = camera.pairing.offer()
    shown = offer.display_code()
    assert len(shown) == 11 and shown[5] == "-"
    # Typed in lower case, without the dash, with O for 0 and l for 1.
    typed = shown.replace("-", " ").lower().replace("0", "o").replace("1", "l")
    assert normalize_code(typed) == offer.code
    request, pair_key = make_request(typed, camera.id, phone_key(), "tablet", camera.clock())
    _, response = camera.pairing.accept(request)
    check_response(response, pair_key, request)
    assert [device.name for device in camera.store.devices()] == ["tablet"]


def test_a_wrong_code_is_refused_and_guessing_cancels_the_offer(camera: Camera) -> None:
    offer = camera.pairing.offer()
    wrong = "0000000000" if offer.code != "0000000000" else "1111111111"
    for _ in range(MAX_FAILURES):
        request, _ = make_request(wrong, camera.id, phone_key(), "guess", camera.clock())
        refused("bad-mac", camera, request)
    right, _ = make_request(offer.code, camera.id, phone_key(), "late", camera.clock())
    refused("cancelled", camera, right)
    assert camera.store.devices() == []


def test_an_expired_code_is_refused(camera: Camera) -> None:
    offer = camera.pairing.offer()
    camera.clock.now += DEFAULT_LIFETIME + 1
    request, _ = make_request(offer.code, camera.id, phone_key(), "late", camera.clock())
    reason = refused("expired", camera, request)
    assert "code" in reason.reason
    assert camera.store.devices() == []


def test_a_replayed_or_reused_pairing_is_refused(camera: Camera) -> None:
    offer = camera.pairing.offer()
    camera_id, secret = scan(offer)
    request, _ = make_request(secret, camera_id, phone_key(), "phone", camera.clock())
    camera.pairing.accept(request)
    # The same request again (a captured one replayed).
    refused("replayed", camera, request)
    # A new request with the same, used code.
    again, _ = make_request(secret, camera_id, phone_key(), "intruder", camera.clock())
    refused("used", camera, again)
    # The old request replayed much later, once the camera forgot its nonce.
    camera.clock.now += 2 * 3600
    refused("expired", camera, request)
    assert [device.name for device in camera.store.devices()] == ["phone"]


def test_a_request_with_a_stale_or_future_time_is_refused(camera: Camera) -> None:
    offer = camera.pairing.offer()
    old, _ = make_request(offer.code, camera.id, phone_key(), "x", camera.clock() - 400)
    refused("expired", camera, old)
    ahead, _ = make_request(offer.code, camera.id, phone_key(), "x", camera.clock() + 400)
    refused("expired", camera, ahead)


def test_a_request_for_another_camera_is_refused(camera: Camera, tmp_path: Path) -> None:
    other = start_camera(tmp_path / "other", camera.clock)
    other_offer = other.pairing.offer()
    camera.pairing.offer()
    request, _ = make_request(other_offer.code, other.id, phone_key(), "x", camera.clock())
    refused("camera", camera, request)
    # Relabelled with this camera's id, its MAC no longer holds.
    request["camera"] = camera.id
    refused("bad-mac", camera, request)


def test_altered_requests_are_refused(camera: Camera) -> None:
    offer = camera.pairing.offer()
    request, _ = make_request(offer.code, camera.id, phone_key(), "phone", camera.clock())
    swapped = dict(request, device_key=b64url(public_bytes(phone_key().public_key())))
    refused("bad-mac", camera, swapped)
    refused("bad-mac", camera, dict(request, name="phone!"))
    refused("bad-mac", camera, dict(request, time=request["time"] + 1))
    refused("bad-key", camera, dict(request, device_key=b64url(b"\x04" + b"\x01" * 64)))
    refused("version", camera, dict(request, v=2))
    refused("garbage", camera, dict(request, time="now"))
    refused("garbage", camera, dict(request, nonce=b64url(b"short")))
    refused("garbage", camera, dict(request, camera="zz"))
    refused("garbage", camera, "a string")
    # None of that used the offer up.
    camera.pairing.accept(request)


def test_a_forged_response_is_refused_by_the_phone(camera: Camera) -> None:
    offer = camera.pairing.offer()
    request, pair_key = make_request(offer.code, camera.id, phone_key(), "phone", camera.clock())
    _, response = camera.pairing.accept(request)
    impostor = public_bytes(phone_key().public_key())
    with pytest.raises(Refused) as caught:
        check_response(dict(response, camera_key=b64url(impostor)), pair_key, request)
    assert caught.value.code == "camera"
    with pytest.raises(Refused) as caught:
        check_response(dict(response, mac=b64url(b"\x00" * 32)), pair_key, request)
    assert caught.value.code == "bad-mac"
    with pytest.raises(Refused):
        check_response({"v": 1}, pair_key, request)


def test_only_a_few_offers_are_pending_at_once(camera: Camera) -> None:
    offers = [camera.pairing.offer() for _ in range(5)]
    request, _ = make_request(offers[0].code, camera.id, phone_key(), "x", camera.clock())
    refused("cancelled", camera, request)
    request, _ = make_request(offers[-1].code, camera.id, phone_key(), "x", camera.clock())
    camera.pairing.accept(request)


def test_the_store_survives_a_restart_and_is_private(camera: Camera) -> None:
    keys = [phone_key() for _ in range(2)]
    for number, key in enumerate(keys):
        request, _ = make_request(
            camera.pairing.offer().code, camera.id, key, f"phone {number}", camera.clock()
        )
        camera.pairing.accept(request)
        camera.clock.now += 10
    path = camera.directory / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [name for name in path.parent.iterdir() if name.name.endswith(".tmp")]
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert [entry["name"] for entry in data["devices"]] == ["phone 0", "phone 1"]
    assert set(data["devices"][0]) == {"id", "name", "public_key", "paired_at", "last_seen", "user"}

    restarted = start_camera(camera.directory, camera.clock)
    assert restarted.id == camera.id
    assert restarted.store.devices() == camera.store.devices()
    assert restarted.store.public_key(camera.store.devices()[1].id) == public_bytes(
        keys[1].public_key()
    )


def test_unpairing_removes_a_device_for_good(camera: Camera) -> None:
    request, _ = make_request(camera.pairing.offer().code, camera.id, phone_key(), "x", T0)
    device, _ = camera.pairing.accept(request)
    assert camera.store.remove(device.id)
    assert not camera.store.remove(device.id)
    assert camera.store.public_key(device.id) is None
    assert start_camera(camera.directory, camera.clock).store.devices() == []


def test_pairing_the_same_key_again_keeps_one_entry(camera: Camera) -> None:
    key = phone_key()
    for name in ("old name", "new name"):
        request, _ = make_request(camera.pairing.offer().code, camera.id, key, name, T0)
        camera.pairing.accept(request)
    (device,) = camera.store.devices()
    assert device.name == "new name" and device.paired_at == T0


def test_last_seen_is_written_seldom(camera: Camera, monkeypatch: pytest.MonkeyPatch) -> None:
    request, _ = make_request(camera.pairing.offer().code, camera.id, phone_key(), "x", T0)
    device, _ = camera.pairing.accept(request)
    writes: list[bytes] = []
    real = write_private

    def counting(path: Path, content: bytes) -> None:
        writes.append(content)
        real(path, content)

    monkeypatch.setattr(devices_module, "write_private", counting)
    camera.store.seen(device.id, T0 + 1)
    for second in range(2, 100):
        camera.store.seen(device.id, T0 + second)
    assert len(writes) == 1
    assert camera.store.get(device.id).last_seen == T0 + 99  # type: ignore[union-attr]
    camera.store.seen(device.id, T0 + 1 + devices_module.SEEN_WRITE_INTERVAL)
    assert len(writes) == 2
    assert start_camera(camera.directory, camera.clock).store.devices()[0].last_seen == (
        T0 + 1 + devices_module.SEEN_WRITE_INTERVAL
    )


def test_a_damaged_store_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert DeviceStore(tmp_path).devices() == []
    assert "ignoring" in caplog.text
    # An entry whose id is not its key's (edited by hand) is dropped, the rest kept.
    good = public_bytes(phone_key().public_key())
    other = public_bytes(phone_key().public_key())
    entries: list[object] = [
        {"id": key_id(good).hex(), "name": "good", "public_key": b64url(good), "paired_at": T0},
        {"id": key_id(good).hex(), "name": "bad", "public_key": b64url(other), "paired_at": T0},
        "not an object",
    ]
    path.write_text(json.dumps({"version": 1, "devices": entries}))
    assert [device.name for device in DeviceStore(tmp_path).devices()] == ["good"]


def test_the_camera_key_is_made_once(tmp_path: Path) -> None:
    first = load_or_make_camera_key(tmp_path)
    path = tmp_path / "remote-camera-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_make_camera_key(tmp_path)
    assert public_bytes(first.public_key()) == public_bytes(second.public_key())


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
FIELDS = st.sampled_from(["v", "camera", "device_key", "name", "time", "nonce", "mac"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=JSONISH, field=FIELDS, value=JSONISH)
def test_fuzz_requests_only_ever_refused(
    camera: Camera, garbage: object, field: str, value: object
) -> None:
    with pytest.raises(Refused):
        camera.pairing.accept(garbage)
    offer = camera.pairing.offer()
    request, _ = make_request(offer.code, camera.id, phone_key(), "phone", camera.clock())
    if request[field] != value:
        with pytest.raises(Refused):
            camera.pairing.accept(dict(request, **{field: value}))
    assert camera.store.devices() == []
