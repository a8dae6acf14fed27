"""Pairing a phone once, on the LAN, so it can later reach the camera remotely.

What the admin's page shows for one offer (valid `lifetime`, default 5 minutes, one
use):
- a QR code of `https://<camera>/pair#<qr_fragment>`, the fragment being
  `1.<camera id, hex>.<secret, 16 random bytes, base64url>`: a fragment never goes
  into a request line or a log, and the phone learns the camera's id from it;
- a short code to type instead, `ABCDE-FGHJK` (10 Crockford base32 characters, 50
  bits). Fifty bits because a LAN attacker who gets past the self-signed certificate
  sees the request's MAC and could search the code offline: 2^50 HMACs in the
  five minutes of an offer is out of reach. Online guessing is stopped sooner:
  MAX_FAILURES wrong MACs cancel every pending offer.

The phone makes its own P-256 key and sends a pairing request (JSON):
    {"v": 1, "camera": <hex id>, "device_key": <base64url point>, "name": "...",
     "time": <ms>, "nonce": <base64url, 16 bytes>, "mac": <base64url>}
mac = HMAC-SHA256(pair key, "peercam-pair-request-v1\\0" || camera id || device key ||
time (8, big endian) || nonce || name as UTF-8), with pair key = HKDF-SHA256(secret,
or the code's 10 characters, salt "peercam-pair-v1", info camera id). The camera
answers with its public key, MACed the same way over the request's nonce, so the
phone knows it paired with the camera whose code it used and no one in between.

What each side keeps: the camera, the device's id, name, public key, and pairing
and last-seen times (devices.py); the phone, its own key (non-extractable, in
IndexedDB) and the camera's public key. Neither keeps the code or the secret.

Refused, with a reason: a malformed request, another camera's id, a request older
or newer than REQUEST_WINDOW, a MAC no pending offer's secret or code gives, an
expired, used or cancelled offer, and a nonce seen before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from peercam.remote.devices import MAX_NAME, DeviceStore, PairedDevice
from peercam.remote.keys import ID_BYTES, b64url, from_b64url, key_id, parse_public, public_bytes
from peercam.remote.refused import Refused

VERSION = 1
SALT = b"peercam-pair-v1"
REQUEST_LABEL = b"peercam-pair-request-v1\0"
RESPONSE_LABEL = b"peercam-pair-response-v1\0"
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
CODE_LENGTH = 10
DEFAULT_LIFETIME = 300.0
REQUEST_WINDOW = 300.0
MAX_FAILURES = 5
MAX_PENDING = 4
# Finished offers are kept this long to name the reason (used, expired) for a late
# or replayed request instead of only "wrong MAC".
KEEP_FINISHED = 3600.0


def normalize_code(code: str) -> str:
    """What a person types, as the camera compares it: case, dashes, spaces and the
    letters Crockford reads as digits do not matter."""
    cleaned = code.upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


def pair_key(secret: bytes | str, camera_id: bytes) -> bytes:
    """The MAC key from the QR secret (bytes) or the typed code (str)."""
    ikm = normalize_code(secret).encode() if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=camera_id).derive(ikm)


def request_mac(
    key: bytes, camera_id: bytes, device_key: bytes, millis: int, nonce: bytes, name: str
) -> bytes:
    message = (
        REQUEST_LABEL + camera_id + device_key + struct.pack(">Q", millis) + nonce + name.encode()
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def response_mac(
    key: bytes, camera_id: bytes, camera_key: bytes, device_id: bytes, nonce: bytes
) -> bytes:
    message = RESPONSE_LABEL + camera_id + camera_key + device_id + nonce
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass
class PairingOffer:
    camera_id: bytes
    secret: bytes
    code: str
    created: float
    expires: float
    # The account the paired device will act as.
    user: str = ""
    state: str = "pending"  # pending | used | expired | cancelled
    finished: float | None = None
    keys: tuple[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = (pair_key(self.secret, self.camera_id), pair_key(self.code, self.camera_id))

    def qr_fragment(self) -> str:
        return f"{VERSION}.{self.camera_id.hex()}.{b64url(self.secret)}"

    def display_code(self) -> str:
        half = CODE_LENGTH // 2
        return f"{self.code[:half]}-{self.code[half:]}"


@dataclass(frozen=True)
class PairingRequest:
    camera_id: bytes
    device_key: bytes
    name: str
    millis: int
    nonce: bytes
    mac: bytes

    @classmethod
    def parse(cls, message: object) -> PairingRequest:
        if not isinstance(message, dict):
            raise Refused("garbage", "a pairing request is a JSON object")
        if message.get("v") != VERSION:
            raise Refused("version", f"pairing version {message.get('v')!r}; expected {VERSION}")
        fields = ("camera", "device_key", "name", "nonce", "mac")
        if not all(isinstance(message.get(name), str) for name in fields):
            raise Refused("garbage", f"a pairing request needs the strings {', '.join(fields)}")
        millis = message.get("time")
        if not isinstance(millis, int) or isinstance(millis, bool) or not 0 <= millis < 2**63:
            raise Refused("garbage", "time must be milliseconds since 1970")
        try:
            camera_id = bytes.fromhex(message["camera"])
        except ValueError:
            raise Refused("garbage", "camera is not a hex id") from None
        request = cls(
            camera_id=camera_id,
            device_key=from_b64url(message["device_key"], "device_key"),
            name=message["name"],
            millis=millis,
            nonce=from_b64url(message["nonce"], "nonce"),
            mac=from_b64url(message["mac"], "mac"),
        )
        if len(request.camera_id) != ID_BYTES or len(request.nonce) != 16:
            raise Refused("garbage", "camera id or nonce of the wrong length")
        if len(request.mac) != 32 or len(request.name) > MAX_NAME:
            raise Refused("garbage", "mac of the wrong length, or name too long")
        try:
            request.name.encode()
        except UnicodeEncodeError:
            raise Refused("garbage", "name is not valid text") from None
        return request


class Pairing:
    """The camera's side: offers for the admin's page, and accepting requests.

    `offer` is memory only; `accept` writes the device store (through
    DeviceStore.add), so the caller runs it in a thread. Offers do not survive a
    restart: the admin makes a new one.
    """

    def __init__(
        self,
        camera_key: ec.EllipticCurvePrivateKey,
        store: DeviceStore,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._camera_key = public_bytes(camera_key.public_key())
        self._camera_id = key_id(self._camera_key)
        self._store = store
        self._lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._offers: list[PairingOffer] = []
        self._failures = 0
        self._nonces: dict[bytes, float] = {}

    def offer(self, user: str = "") -> PairingOffer:
        now = self._clock()
        with self._lock:
            self._tidy(now)
            pending = [offer for offer in self._offers if offer.state == "pending"]
            for old in pending[: max(0, len(pending) - MAX_PENDING + 1)]:
                self._finish(old, "cancelled", now)
            offer = PairingOffer(
                camera_id=self._camera_id,
                secret=secrets.token_bytes(16),
                code="".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)),
                created=now,
                expires=now + self._lifetime,
                user=user,
            )
            self._offers.append(offer)
            self._failures = 0
            return offer

    def cancel_all(self) -> None:
        with self._lock:
            for offer in self._offers:
                if offer.state == "pending":
                    self._finish(offer, "cancelled", self._clock())

    def accept(self, message: object) -> tuple[PairedDevice, dict[str, Any]]:
        """Pair the device a request names, or Refused; returns the device and the
        response for the phone."""
        request = PairingRequest.parse(message)
        if request.camera_id != self._camera_id:
            raise Refused("camera", f"request for camera {request.camera_id.hex()}")
        now = self._clock()
        if abs(now - request.millis / 1000) > REQUEST_WINDOW:
            raise Refused("expired", "the request's time is too far from the camera's clock")
        parse_public(request.device_key)
        with self._lock:
            self._tidy(now)
            if request.nonce in self._nonces:
                raise Refused("replayed", "this pairing request was already received")
            offer, key = self._matching_offer(request)
            if offer is None or key is None:
                self._failures += 1
                if self._failures >= MAX_FAILURES:
                    for pending in self._offers:
                        if pending.state == "pending":
                            self._finish(pending, "cancelled", now)
                raise Refused("bad-mac", "no pairing offer gives this MAC (wrong code?)")
            if offer.state == "pending" and now >= offer.expires:
                self._finish(offer, "expired", now)
            if offer.state != "pending":
                raise Refused(offer.state, f"the pairing code was {offer.state}")
            self._finish(offer, "used", now)
            self._nonces[request.nonce] = now
        device = self._store.add(request.name, request.device_key, now, offer.user)
        device_id = key_id(request.device_key)
        response = {
            "v": VERSION,
            "camera": self._camera_id.hex(),
            "camera_key": b64url(self._camera_key),
            "device": device_id.hex(),
            "mac": b64url(
                response_mac(key, self._camera_id, self._camera_key, device_id, request.nonce)
            ),
        }
        return device, response

    def _matching_offer(self, request: PairingRequest) -> tuple[PairingOffer | None, bytes | None]:
        for offer in reversed(self._offers):
            for key in offer.keys:
                expected = request_mac(
                    key,
                    request.camera_id,
                    request.device_key,
                    request.millis,
                    request.nonce,
                    request.name,
                )
                if hmac.compare_digest(expected, request.mac):
                    return offer, key
        return None, None

    def _finish(self, offer: PairingOffer, state: str, now: float) -> None:
        offer.state = state
        offer.finished = now

    def _tidy(self, now: float) -> None:
        for offer in self._offers:
            if offer.state == "pending" and now >= offer.expires:
                self._finish(offer, "expired", now)
        self._offers = [
            offer
            for offer in self._offers
            if offer.finished is None or now - offer.finished < KEEP_FINISHED
        ]
        self._nonces = {
            nonce: at for nonce, at in self._nonces.items() if now - at < 2 * REQUEST_WINDOW
        }


def make_request(
    secret: bytes | str,
    camera_id: str,
    device_key: ec.EllipticCurvePrivateKey,
    name: str,
    now: float,
) -> tuple[dict[str, Any], bytes]:
    """The phone's side (the page does the same in JavaScript): the request, and the
    pair key to check the response with."""
    camera = bytes.fromhex(camera_id)
    key = pair_key(secret, camera)
    public = public_bytes(device_key.public_key())
    nonce = secrets.token_bytes(16)
    millis = int(now * 1000)
    request = {
        "v": VERSION,
        "camera": camera_id,
        "device_key": b64url(public),
        "name": name,
        "time": millis,
        "nonce": b64url(nonce),
        "mac": b64url(request_mac(key, camera, public, millis, nonce, name)),
    }
    return request, key


def check_response(response: object, key: bytes, request: dict[str, Any]) -> bytes:
    """The phone's side: the camera's public key, once its MAC proves it knew the code."""
    if not isinstance(response, dict) or response.get("v") != VERSION:
        raise Refused("garbage", "not a version 1 pairing response")
    try:
        camera_id = bytes.fromhex(str(response["camera"]))
        camera_key = from_b64url(str(response["camera_key"]), "camera_key")
        device_id = bytes.fromhex(str(response["device"]))
        mac = from_b64url(str(response["mac"]), "mac")
    except (KeyError, ValueError):
        missing = "a pairing response needs camera, camera_key, device and mac"
        raise Refused("garbage", missing) from None
    parse_public(camera_key)
    if camera_id.hex() != request["camera"] or key_id(camera_key) != camera_id:
        raise Refused("camera", "the response is from another camera, or its key is not its id")
    nonce = from_b64url(request["nonce"], "nonce")
    if not hmac.compare_digest(response_mac(key, camera_id, camera_key, device_id, nonce), mac):
        raise Refused("bad-mac", "the camera's answer does not prove it knew the code")
    return camera_key
