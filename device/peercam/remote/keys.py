"""P-256 keys as both ends exchange them, and the camera's own long-term key.

P-256 rather than X25519 because the page must do the same with WebCrypto, where
ECDH P-256 works in every browser and X25519 only in recent ones (see sealing.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from peercam.remote.refused import Refused
from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

FILE_NAME = "remote-camera-key.pem"
PUBLIC_KEY_BYTES = 65  # uncompressed point: 0x04 || x || y, what WebCrypto's "raw" gives
ID_BYTES = 16


def public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def parse_public(raw: bytes) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 point, checked to be on the curve, or Refused."""
    if len(raw) != PUBLIC_KEY_BYTES or raw[0] != 4:
        raise Refused("bad-key", "not an uncompressed P-256 public key")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as error:
        raise Refused("bad-key", f"not a point on P-256 ({error})") from None


def key_id(raw_public: bytes) -> bytes:
    """Names a key by its hash, so an id can never be claimed without the key."""
    return hashlib.sha256(raw_public).digest()[:ID_BYTES]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Refused("garbage", f"{what} is not base64url") from None


def load_or_make_camera_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    """The camera's key, made at first use and kept: every paired device knows the
    camera by it, so a new key would silently unpair them all.

    Blocking (file and key generation): call it off the event loop.
    """
    path = directory / FILE_NAME
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
            loaded.curve, ec.SECP256R1
        ):
            raise ValueError(f"{path} does not hold a P-256 private key")
        return loaded
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    logger.info("made the camera's remote-access key %s", path)
    return key
