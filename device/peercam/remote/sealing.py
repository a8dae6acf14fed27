"""Signaling messages sealed end to end between a paired device and the camera.

The rendezvous (an MQTT broker) carries these bytes and must learn nothing from them
and be unable to forge, replay or redirect them.

Construction (one self-contained message, no session state, like HPKE's Auth mode):

- Both ends hold a long-term P-256 key and know the other's public key from pairing.
  The sender makes a fresh ephemeral key E for every message.
- ikm = ECDH(E, recipient) || ECDH(sender, recipient). The first term makes every
  message key new, so no (key, nonce) pair can ever repeat even when a phone loses its
  state; the second authenticates the sender: only the two paired keys can compute it.
- key || iv = HKDF-SHA256(ikm, salt = "peercam-remote-v1",
  info = header || sender public || recipient public), 32 + 12 bytes.
- AES-256-GCM(key, iv, payload) with the header as associated data.
- header (107 bytes) = version (1) | direction (1: device to camera, 2: camera to
  device) | camera id (16) | device id (16) | sender's time, ms since 1970 (8, big
  endian) | E's public key (65, uncompressed). Ids are the first 16 bytes of SHA-256
  of the public key, so an id cannot be claimed without the key.

The header is in clear: the broker learns which device talks to which camera, when,
and how much, as the topics tell it anyway; never what they say.

Refusals: the header names the camera and device, and is authenticated, so a message
from another camera's topic or meant for another device is refused by name, and a
broker that edits the header breaks the tag. Replays: the sender's time must be within
`window` seconds of ours, and within that window every ephemeral key (unique per
message) is remembered; a repeat is refused. The cost of choosing a time window over
per-direction counters: both clocks must agree to within the window (phones use NTP;
a Pi without a clock must have synced), and a message replayed right after a camera
restart (the memory is gone) is accepted once while still inside the window; the
most it can do is make the camera answer an old offer again, an answer only the real
device can read. Counters
would have meant a disk write per message on the camera's SD card and a counter the
page keeps in IndexedDB.

Why this and not a ready-made protocol, compared:
- cryptography (chosen; already a dependency): ECDH P-256, HKDF, AES-GCM are exactly
  what WebCrypto offers in every browser (Chromium, Firefox, Safari), so the page
  implements the same construction in ~100 lines of plain JavaScript with no library
  (web/remote_crypto.js). Its HPKE (in the 50.x installed here) has only Base mode
  (no sender authentication), keeps associated data private API, and would need an
  HPKE in JavaScript too.
- PyNaCl (crypto_box: X25519 + XSalsa20-Poly1305): sound and simple, but no browser
  has XSalsa20 and X25519 in WebCrypto only lately; the page would need libsodium.js
  (a large WebAssembly blob) in its cache.
- noiseprotocol (Noise KK/IK): a handshake with session state on both ends, a poor
  fit for store-and-forward signaling where messages are lost or reordered; the
  package has had no release since 2020, and the page would need a JS Noise too.

Nothing here is a primitive of our own: every operation is cryptography's.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from peercam.remote.keys import ID_BYTES, PUBLIC_KEY_BYTES, key_id, parse_public, public_bytes
from peercam.remote.refused import Refused

VERSION = 1
TO_CAMERA = 1
TO_DEVICE = 2
SALT = b"peercam-remote-v1"
HEADER = struct.Struct(f">BB{ID_BYTES}s{ID_BYTES}sQ{PUBLIC_KEY_BYTES}s")
TAG_BYTES = 16
# An SDP offer with its candidates is well under this; the daemon's own WHEP limit
# is 64 000 bytes.
MAX_PAYLOAD = 96 * 1024
DEFAULT_WINDOW = 120.0
# Only authenticated messages enter the replay memory, so only a paired device can
# fill it; this bounds what a misbehaving one costs.
MAX_REMEMBERED = 16384


@dataclass(frozen=True)
class Opened:
    device_id: str  # hex
    payload: bytes
    sent_at: float  # the sender's clock, seconds


class DeviceKeys(Protocol):
    """Where the camera looks a device up (DeviceStore): its public key, or None once
    unpaired. Called on every message, so it must not touch the disk."""

    def public_key(self, device_id: str) -> bytes | None: ...


@dataclass
class ReplayMemory:
    """Ephemeral keys seen within the time window, forgotten once the window has
    passed (the time check refuses those by itself)."""

    window: float
    _seen: dict[bytes, float] = field(default_factory=dict)

    def check_and_remember(self, ephemeral: bytes, sent_at: float, now: float) -> None:
        if ephemeral in self._seen:
            raise Refused("replayed", "this message was already received")
        # Insertion order is nearly expiry order: forgetting from the oldest end keeps
        # the memory at about one window of traffic without a scan per message.
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= now:
                break
            del self._seen[oldest]
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen = {key: until for key, until in self._seen.items() if until >= now}
            if len(self._seen) >= MAX_REMEMBERED:
                raise Refused("busy", "too many recent messages to remember")
        self._seen[ephemeral] = sent_at + self.window

    def __len__(self) -> int:
        return len(self._seen)


def _derive(ikm: bytes, header: bytes, sender: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=44, salt=SALT, info=header + sender + recipient
    ).derive(ikm)
    return okm[:32], okm[32:]


def seal(
    direction: int,
    camera_id: bytes,
    device_id: bytes,
    sender: ec.EllipticCurvePrivateKey,
    recipient: ec.EllipticCurvePublicKey,
    payload: bytes,
    now: float,
) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    header = HEADER.pack(
        VERSION,
        direction,
        camera_id,
        device_id,
        int(now * 1000),
        public_bytes(ephemeral.public_key()),
    )
    ikm = ephemeral.exchange(ec.ECDH(), recipient) + sender.exchange(ec.ECDH(), recipient)
    key, iv = _derive(ikm, header, public_bytes(sender.public_key()), public_bytes(recipient))
    return header + AESGCM(key).encrypt(iv, payload, header)


@dataclass(frozen=True)
class _Header:
    raw: bytes
    direction: int
    camera_id: bytes
    device_id: bytes
    sent_at: float
    ephemeral: bytes


def _parse(data: bytes) -> _Header:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Refused("garbage", "not bytes")
    data = bytes(data)
    if len(data) < HEADER.size + TAG_BYTES:
        raise Refused("truncated", f"{len(data)} bytes is shorter than any message")
    if len(data) > HEADER.size + MAX_PAYLOAD + TAG_BYTES:
        raise Refused("too-large", f"{len(data)} bytes")
    version, direction, camera_id, device_id, millis, ephemeral = HEADER.unpack_from(data)
    if version != VERSION:
        raise Refused("version", f"version {version}; this camera speaks {VERSION}")
    if direction not in (TO_CAMERA, TO_DEVICE):
        raise Refused("garbage", f"unknown direction {direction}")
    return _Header(data[: HEADER.size], direction, camera_id, device_id, millis / 1000, ephemeral)


def _open(
    data: bytes,
    header: _Header,
    me: ec.EllipticCurvePrivateKey,
    sender_raw: bytes,
    memory: ReplayMemory,
    now: float,
) -> bytes:
    if abs(now - header.sent_at) > memory.window:
        raise Refused(
            "expired",
            f"sent {now - header.sent_at:+.0f} s from now; clocks must agree "
            f"within {memory.window:.0f} s",
        )
    ephemeral = parse_public(header.ephemeral)
    sender = parse_public(sender_raw)
    ikm = me.exchange(ec.ECDH(), ephemeral) + me.exchange(ec.ECDH(), sender)
    key, iv = _derive(ikm, header.raw, sender_raw, public_bytes(me.public_key()))
    try:
        payload = AESGCM(key).decrypt(iv, data[HEADER.size :], header.raw)
    except InvalidTag:
        raise Refused("forged", "authentication failed (altered, or not from that key)") from None
    # Remembered only once authentic, so forgeries cannot crowd out real messages.
    memory.check_and_remember(header.ephemeral, header.sent_at, now)
    return payload


class CameraChannel:
    """The camera's end: opens what paired devices send, seals what it answers.

    Synchronous and CPU-only (two or three ECDH operations per message, well under a
    millisecond on a Pi 4); no I/O. Recording when a device was last seen writes the
    store now and then (DeviceStore.seen), so the caller does it, in a thread.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        devices: DeviceKeys,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._devices = devices
        self._clock = clock
        self._memory = ReplayMemory(window)
        self.public_key = public_bytes(key.public_key())
        self._id = key_id(self.public_key)
        self.camera_id = self._id.hex()

    def seal(self, device_id: str, payload: bytes) -> bytes:
        raw = self._devices.public_key(device_id)
        if raw is None:
            raise Refused("unknown-device", f"device {device_id} is not paired")
        return seal(
            TO_DEVICE,
            self._id,
            bytes.fromhex(device_id),
            self._key,
            parse_public(raw),
            payload,
            self._clock(),
        )

    def open(self, data: bytes) -> Opened:
        header = _parse(data)
        if header.direction != TO_CAMERA:
            raise Refused("direction", "a message for a device, not for the camera")
        if header.camera_id != self._id:
            raise Refused("camera", f"meant for camera {header.camera_id.hex()}, not this one")
        device_id = header.device_id.hex()
        raw = self._devices.public_key(device_id)
        if raw is None:
            raise Refused("unknown-device", f"device {device_id} is not paired")
        payload = _open(bytes(data), header, self._key, raw, self._memory, self._clock())
        return Opened(device_id, payload, header.sent_at)


class DeviceChannel:
    """A paired device's end, as web/remote_crypto.js implements it in the page; here
    for tests and for a Python client."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        camera_public_key: bytes,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._camera_raw = camera_public_key
        self._camera = parse_public(camera_public_key)
        self._camera_id = key_id(camera_public_key)
        self._clock = clock
        self._memory = ReplayMemory(window)
        self.public_key = public_bytes(key.public_key())
        self._id = key_id(self.public_key)
        self.device_id = self._id.hex()

    def seal(self, payload: bytes) -> bytes:
        return seal(
            TO_CAMERA, self._camera_id, self._id, self._key, self._camera, payload, self._clock()
        )

    def open(self, data: bytes) -> Opened:
        header = _parse(data)
        if header.direction != TO_DEVICE:
            raise Refused("direction", "a message for the camera, not for a device")
        if header.camera_id != self._camera_id:
            raise Refused("camera", f"from camera {header.camera_id.hex()}, not the paired one")
        if header.device_id != self._id:
            raise Refused("recipient", f"meant for device {header.device_id.hex()}")
        payload = _open(
            bytes(data), header, self._key, self._camera_raw, self._memory, self._clock()
        )
        return Opened(self.device_id, payload, header.sent_at)
