"""The camera's VAPID key (RFC 8292): made at first start, kept in the state directory.

Browsers bind each push subscription to the public key the page subscribed with, so
a new key would silently orphan every subscription: the key is made once and kept.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

FILE_NAME = "webpush-vapid.pem"


def load_or_make(directory: Path) -> Vapid02:
    """Blocking (file and key generation): call it off the event loop."""
    path = directory / FILE_NAME
    if path.exists():
        return Vapid02.from_pem(path.read_bytes())
    key = Vapid02()
    key.generate_keys()
    write_private(path, key.private_pem())
    logger.info("made the Web Push (VAPID) key %s", path)
    return key


def application_server_key(key: Vapid02) -> str:
    """The public key as the page hands it to pushManager.subscribe: the uncompressed
    P-256 point, base64url without padding."""
    raw = key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
